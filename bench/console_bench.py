"""Benchmark: the console's server-rendered pages for an account with 10,000 runs
(issue 17 targets: the runs list < 100 ms, a run's page < 50 ms).

    python bench/console_bench.py                 # own temporary stack, 10,000 runs
    python bench/console_bench.py --runs 2000 --requests 100

Starts its own stack on free loopback ports (fake LLM, no embedded model), invites an
enterprise account (its hourly run limit fits 10,000 runs), creates the runs through the
API (64 at a time, a template workflow, so every run completes), signs in through the
console's own form, then times sequential GETs of each page (one request at a time:
latency, not throughput) and prints the figures as JSON.
"""

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PASSWORD = "bench password 1234"
WORKFLOW = {
    "slug": "bench-console",
    "name": "Console bench",
    "stages": [{"id": "echo", "type": "template", "template": "{{ input_text }}"}],
}


async def create_runs(
    http: aiohttp.ClientSession, base: str, token: str, workflow_id: str, count: int
) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    queue = iter(range(count))
    began = time.monotonic()

    async def worker() -> None:
        for i in queue:
            async with http.post(
                f"{base}/api/v1/workflows/{workflow_id}/runs",
                json={"input_text": f"run {i}", "version": "draft"},
                headers=headers,
            ) as response:
                if response.status != 201:
                    raise RuntimeError(f"run {i}: {response.status} {await response.text()}")

    await asyncio.gather(*(worker() for _ in range(64)))
    return time.monotonic() - began


async def wait_settled(http: aiohttp.ClientSession, base: str, token: str, limit: float) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        async with http.get(
            f"{base}/api/v1/workflow-runs",
            params={"status": "pending", "limit": "1"},
            headers=headers,
        ) as response:
            if not (await response.json())["data"]:
                return
        await asyncio.sleep(1)


async def sign_in(http: aiohttp.ClientSession, base: str, invite_url: str, email: str) -> None:
    async with http.get(invite_url) as response:
        form = re.search(r'name="csrf_token" value="([^"]+)"', await response.text())
    assert form is not None
    data = {"csrf_token": form[1], "password": PASSWORD, "password_again": PASSWORD}
    async with http.post(invite_url, data=data) as response:
        assert response.status == 200, response.status  # followed to the sign-in page
    data = {"csrf_token": form[1], "email": email, "password": PASSWORD, "next": "/app/runs"}
    async with http.post(f"{base}/app/login", data=data) as response:
        assert response.url.path == "/app/runs", response.url


async def time_page(http: aiohttp.ClientSession, url: str, requests: int) -> dict[str, Any]:
    for _ in range(5):  # warm-up
        async with http.get(url) as response:
            assert response.status == 200, (url, response.status)
            await response.read()
    samples = []
    for _ in range(requests):
        began = time.perf_counter()
        async with http.get(url) as response:
            body = await response.read()
        samples.append((time.perf_counter() - began) * 1000)
        assert response.status == 200
    samples.sort()
    return {
        "requests": requests,
        "bytes": len(body),
        "p50_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 2),
        "max_ms": round(samples[-1], 2),
    }


async def measure(stack: Any, runs: int, requests: int) -> dict[str, Any]:
    base = stack.base_url
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    invite = json.loads(
        stack.admin("users", "invite", "--email", email, "--plan", "enterprise").stdout
    )
    stack.admin("credits", "grant", "--account", invite["user_id"], "--amount-usd", "1000")
    key = json.loads(
        stack.admin("keys", "create", "--user", invite["user_id"], "--name", "bench").stdout
    )["secret"]
    jar = aiohttp.CookieJar(unsafe=True)  # keeps cookies of 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        headers = {"Authorization": f"Bearer {key}"}
        async with http.post(f"{base}/api/v1/workflows", json=WORKFLOW, headers=headers) as r:
            workflow_id = (await r.json())["data"]["id"]
        created_in = await create_runs(http, base, key, workflow_id, runs)
        await wait_settled(http, base, key, 600)
        async with http.get(
            f"{base}/api/v1/workflow-runs", params={"limit": "100"}, headers=headers
        ) as r:
            listed = (await r.json())["data"]
        await sign_in(http, base, invite["invite_url"], email)
        deep = listed[-1]["id"]
        pages = {
            "runs list (50 newest)": f"{base}/app/runs",
            "runs list, status filter": f"{base}/app/runs?status=completed",
            "runs list, workflow filter": f"{base}/app/runs?workflow_id={workflow_id}",
            "runs list, a later page": f"{base}/app/runs?starting_after={deep}",
            "run detail": f"{base}/app/workflows/{workflow_id}/runs/{listed[0]['id']}",
            "workflow page (Run + Publish panels, Get Code)": f"{base}/app/workflows/{workflow_id}",
        }
        results = {name: await time_page(http, url, requests) for name, url in pages.items()}
    return {"runs": runs, "created_in_s": round(created_in, 1), "pages": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    from bench.durability import POSTGRES_SETTINGS, settings_in_effect
    from devstack.stack import Ports, Stack, StackOptions

    root = Path(tempfile.mkdtemp(prefix="weft-console-bench-"))
    options = StackOptions(
        root=root,
        ports=Ports.free(),
        llm="none",
        fake_llm=True,
        postgres_settings=POSTGRES_SETTINGS,  # durable commits, as in production
    )
    stack = Stack(options)
    stack.start()
    try:
        result = asyncio.run(measure(stack, args.runs, args.requests))
        result["postgres"] = asyncio.run(settings_in_effect(stack.dsn))
        print(json.dumps(result, indent=2))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
