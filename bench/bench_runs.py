"""Benchmark: runs through the whole stack (gateway -> auth -> billing -> runs -> Postgres
-> outbox -> NATS -> worker) for a template-only workflow.

Issue 4 targets (2-core machine): creation >= 1,000 runs/s with p99 < 150 ms at 64
connections for 20 s, every accepted run completed and none duplicated; GET run polling
>= 3,000 req/s; POST -> `completed` observed with ?wait: p50 <= 25 ms.

    python bench/bench_runs.py                 # own temporary stack
    python bench/bench_runs.py --duration 5    # a quick look

Load comes from `wrk` (see bench_me.py). After the creation phase the script waits for
every run to finish and counts, in Postgres: runs created, completed, failed, and any run
with more than one terminal event or stage result (a duplicate execution).
"""

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cpu
from bench.wrk import wrk

WORKFLOW = {
    "slug": "bench-template",
    "name": "Bench (template only)",
    "fields": [{"name": "n", "type": "integer", "default": 1}],
    "stages": [{"id": "echo", "type": "template", "template": "{{ input_text }} {{ params.n }}"}],
}

# Parks in awaiting_input: polling it measures the uncached path (gateway -> runs -> PG).
REVIEW_WORKFLOW = {
    "slug": "bench-review",
    "name": "Bench (waits for review)",
    "stages": [
        {
            "id": "review",
            "type": "human_review",
            "prompt": "ok?",
            "fields": [{"name": "ok", "type": "boolean"}],
        }
    ],
}


def post_script(path: Path, tokens: list[str]) -> Path:
    """A wrk script that POSTs the run, rotating over the accounts' tokens."""
    quoted = ", ".join(f'"Bearer {t}"' for t in tokens)
    path.write_text(
        f"local tokens = {{{quoted}}}\n"
        "local i = 0\n"
        'local body = \'{"input_text":"bench","params":{"n":2}}\'\n'
        "request = function()\n"
        "  i = i + 1\n"
        "  local headers = {}\n"
        '  headers["Content-Type"] = "application/json"\n'
        '  headers["Authorization"] = tokens[(i % #tokens) + 1]\n'
        '  return wrk.format("POST", nil, headers, body)\n'
        "end\n"
    )
    return path


async def wait_drained(dsn: str, user_ids: list[str], timeout: float) -> float:
    """Wait until the users' runs are all terminal; the seconds it took."""
    import asyncpg

    conn = await asyncpg.connect(dsn, server_settings={"search_path": "runs"})
    try:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            open_runs = await conn.fetchval(
                "SELECT count(*) FROM runs WHERE user_id = ANY($1)"
                " AND status NOT IN ('completed', 'failed', 'canceled')",
                user_ids,
            )
            if open_runs == 0:
                break
            await asyncio.sleep(0.5)
        return time.monotonic() - began
    finally:
        await conn.close()


async def count_runs(dsn: str, user_ids: list[str]) -> dict[str, Any]:
    """The users' runs by status, and any run executed twice (a duplicate)."""
    import asyncpg

    conn = await asyncpg.connect(dsn, server_settings={"search_path": "runs"})
    try:
        # Fresh statistics, or the planner may join the two big tables the slow way.
        await conn.execute("ANALYZE runs, run_events, stage_results")
        by_status = dict(
            await conn.fetch(
                "SELECT status, count(*) FROM runs WHERE user_id = ANY($1) GROUP BY status",
                user_ids,
            )
        )
        dup_terminal = await conn.fetchval(
            "SELECT count(*) FROM (SELECT e.run_id FROM run_events e JOIN runs r ON r.id = e.run_id"
            " WHERE r.user_id = ANY($1) AND e.type IN ('run.completed', 'run.failed')"
            " GROUP BY e.run_id HAVING count(*) > 1) d",
            user_ids,
        )
        dup_stages = await conn.fetchval(
            "SELECT count(*) FROM (SELECT s.run_id FROM stage_results s JOIN runs r"
            " ON r.id = s.run_id WHERE r.user_id = ANY($1)"
            " GROUP BY s.run_id HAVING count(*) > 1) d",
            user_ids,
        )
        return {
            "runs_in_db": sum(by_status.values()),
            "by_status": by_status,
            "runs_with_duplicate_terminal_event": dup_terminal,
            "runs_with_duplicate_stage_result": dup_stages,
        }
    finally:
        await conn.close()


async def latency_to_completed(base_url: str, token: str, workflow_id: str, n: int) -> dict:
    """POST a run, then GET ?wait until it is completed; the time from POST to that answer
    (and, for the breakdown, how long the POST itself took)."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    samples: list[float] = []
    posts: list[float] = []
    async with aiohttp.ClientSession(headers=headers) as http:
        for _ in range(n):
            began = time.perf_counter()
            async with http.post(
                f"{base_url}/api/v1/workflows/{workflow_id}/runs",
                json={"input_text": "latency", "params": {"n": 1}},
            ) as response:
                assert response.status == 201, await response.text()
                run = (await response.json())["data"]
            posts.append((time.perf_counter() - began) * 1000)
            status = run["status"]
            while status not in ("completed", "failed", "canceled"):
                async with http.get(f"{run['links']['self']}?wait=10") as response:
                    status = (await response.json())["data"]["status"]
            assert status == "completed", status
            samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return {
        "runs": n,
        "p50_ms": round(statistics.median(samples), 2),
        "p90_ms": round(samples[int(n * 0.9) - 1], 2),
        "p99_ms": round(samples[max(0, int(n * 0.99) - 1)], 2),
        "post_p50_ms": round(statistics.median(posts), 2),
    }


async def waiting_run(base_url: str, token: str, workflow_id: str) -> str:
    """The URL of a run of `workflow_id` once it is awaiting input."""
    import aiohttp

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.post(
            f"{base_url}/api/v1/workflows/{workflow_id}/runs", json={"input_text": "wait"}
        ) as response:
            url = str((await response.json())["data"]["links"]["self"])
        for _ in range(30):
            async with http.get(f"{url}?wait=5") as response:
                if (await response.json())["data"]["status"] == "awaiting_input":
                    return url
    raise RuntimeError("the review run never reached awaiting_input")


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    from devstack.stack import Ports, Stack, StackOptions

    root = Path(tempfile.mkdtemp(prefix="weft-bench-runs-"))
    stack = Stack(
        StackOptions(
            root=root,
            ports=Ports.free(gateways=1, workers=args.workers),
            llm="none",
            extra_env={
                "WEFT_GATEWAY_PROCESSES": str(args.gateway_processes),
                "WEFT_RATE_LIMIT_ENTERPRISE": "100000000",
                "WEFT_LOG_LEVEL": "WARNING",
            },
        )
    )
    stack.start()
    try:
        wf_file = root / "bench-workflow.json"
        wf_file.write_text(json.dumps(WORKFLOW))
        workflow_id = json.loads(stack.admin("workflows", "apply", str(wf_file)).stdout)[0]["id"]
        users, tokens = [], []
        for _ in range(args.accounts):
            email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
            user = json.loads(
                stack.admin("users", "create", "--email", email, "--plan", "enterprise").stdout
            )
            stack.admin("credits", "grant", "--account", user["id"], "--amount-usd", "1000")
            token = json.loads(
                stack.admin("keys", "create", "--user", user["id"], "--name", "bench").stdout
            )["secret"]
            users.append(user["id"])
            tokens.append(token)
        create_url = f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs"
        script = post_script(root / "post.lua", tokens)

        result: dict[str, Any] = {
            "workers": args.workers,
            "gateway_processes": args.gateway_processes,
        }
        before = cpu.snapshot()
        create = wrk(["-s", str(script), create_url], args.connections, args.duration, args.threads)
        create["accepted_201"] = create["requests"] - create["non_2xx"]
        result["create"] = create
        drained = asyncio.run(wait_drained(stack.dsn, users, 300))
        create["seconds_to_drain_after_load"] = round(drained, 1)
        time.sleep(1)  # the relay's last publishes
        # Creation and execution of every run ("other" is whatever else ran on the
        # machine meanwhile), measured before the counting queries below.
        spent = cpu.per_component(before, cpu.snapshot())
        create.update(asyncio.run(count_runs(stack.dsn, users)))
        runs = max(1, create["runs_in_db"])
        result["cpu_ms_per_run"] = {
            name: round(1000 * seconds / runs, 3) for name, seconds in spent.items()
        }

        latency = asyncio.run(
            latency_to_completed(stack.base_url, token, workflow_id, args.latency_runs)
        )
        result["post_to_completed"] = latency

        # Poll one finished run (its id from the API).
        out = subprocess.run(
            [
                "curl",
                "-s",
                "-H",
                f"Authorization: Bearer {token}",
                f"{stack.base_url}/api/v1/workflow-runs?limit=1",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        run_url = json.loads(out.stdout)["data"][0]["links"]["self"]
        # A finished run: immutable, so the gateway answers it from its cache.
        result["get_run"] = wrk(
            ["-H", f"Authorization: Bearer {token}", run_url],
            args.connections,
            args.poll_duration,
            args.threads,
        )
        # A run still waiting (awaiting_input): every poll reaches the runs service.
        review_file = root / "bench-review.json"
        review_file.write_text(json.dumps(REVIEW_WORKFLOW))
        review_id = json.loads(stack.admin("workflows", "apply", str(review_file)).stdout)[0]["id"]
        waiting_url = asyncio.run(waiting_run(stack.base_url, token, review_id))
        result["get_run_waiting"] = wrk(
            ["-H", f"Authorization: Bearer {token}", waiting_url],
            args.connections,
            args.poll_duration,
            args.threads,
        )
        return result
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--poll-duration", type=int, default=10)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--gateway-processes", type=int, default=1, help="the stack default; 2 measured no faster"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--accounts", type=int, default=1, help="accounts the creating load is spread over"
    )
    args = parser.parse_args()
    result = run_bench(args)
    print(json.dumps(result, indent=2))
    c, g, lat = result["create"], result["get_run"], result["post_to_completed"]
    w = result["get_run_waiting"]
    print(
        f"create: {c['req_per_s']:.0f} runs/s, p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms,"
        f" accepted {c['accepted_201']}, in db {c['runs_in_db']}, {c['by_status']},"
        f" duplicates {c['runs_with_duplicate_terminal_event']}/"
        f"{c['runs_with_duplicate_stage_result']}\n"
        f"GET run (finished, cached): {g['req_per_s']:.0f} req/s, p99 {g['p99_ms']:.1f} ms\n"
        f"GET run (awaiting_input, uncached): {w['req_per_s']:.0f} req/s,"
        f" p99 {w['p99_ms']:.1f} ms\n"
        f"POST -> completed: p50 {lat['p50_ms']} ms, p90 {lat['p90_ms']} ms\n"
        f"CPU per run (ms): {result['cpu_ms_per_run']}"
    )


if __name__ == "__main__":
    main()
