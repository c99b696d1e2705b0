"""The chaos suite for longer (issue 20): an HA stack, a steady creation load, and the
faults of tests/integration/test_chaos.py in turn, each given more time; prints the
table kept in bench/RESULTS.md.

    .venv/bin/python bench/chaos.py [--rate 20] [--before 5] [--after 15]

Bounded: each fault is given `before` + its own time + `after` seconds of load, then its
runs are accounted for (lost, duplicated, captured exactly once) within 3 minutes.
"""

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack import chaos
from devstack.stack import Ports, Stack, StackOptions


def _account(stack: Stack) -> str:
    """An enterprise user (50,000 runs an hour: the load is not rate limited) with
    credits; answers its key."""
    email = f"chaos-{uuid.uuid4().hex[:8]}@example.com"
    created = stack.admin("users", "create", "--email", email, "--plan", "enterprise")
    user = json.loads(created.stdout)
    stack.admin("credits", "grant", "--account", user["id"], "--amount-usd", "1000")
    key = json.loads(stack.admin("keys", "create", "--user", user["id"], "--name", "chaos").stdout)
    return str(key["secret"])


async def _workflow(stack: Stack, token: str) -> str:
    definition = {
        "slug": f"chaos-{uuid.uuid4().hex[:8]}",
        "name": "Chaos",
        "stages": [
            {"id": "ask", "type": "llm", "model": "fake:echo", "prompt": "{{ input_text }}"}
        ],
    }
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{stack.base_url}/api/v1/workflows", json=definition) as r:
            workflow_id: str = (await r.json())["data"]["id"]
        async with http.post(f"{stack.base_url}/api/v1/workflows/{workflow_id}/publish") as r:
            assert r.status == 201, await r.text()
    return workflow_id


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="weft-chaos-"))
    stack = Stack(
        StackOptions(
            root=root,
            ports=Ports.free(ha=True, workers=2),
            llm="none",
            fake_llm=True,
            ha=True,
            extra_env={
                "WEFT_PRICES": '{"fake:echo": [1000000, 2000000]}',
                "WEFT_WORKFLOWS_DIR": "",
                **chaos.FAST_RECOVERY,
            },
        )
    )
    await asyncio.to_thread(stack.start)
    try:
        token = _account(stack)
        workflow_id = await _workflow(stack, token)
        load = chaos.Load(stack.base_url, token, workflow_id, rate=args.rate)
        loading = asyncio.create_task(load.run())
        faults = [
            ("NATS node killed, back after 5 s", chaos.kill_and_restart(stack, "nats2", 5)),
            ("PostgreSQL primary killed, standby promoted", chaos.fail_over_postgres(stack)),
            ("worker SIGKILLed", chaos.kill_and_restart(stack, "worker")),
            ("runs service SIGKILLed", chaos.kill_and_restart(stack, "runs")),
            ("billing SIGKILLed", chaos.kill_and_restart(stack, "billing")),
        ]
        reports = []
        began = time.monotonic()
        try:
            for name, fault in faults:
                reports.append(
                    await chaos.inject(
                        stack, load, name, fault, before=args.before, after=args.after,
                        settle_seconds=180,
                    )
                )  # fmt: skip
        finally:
            load.stop()
            await loading
        print(
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()},"
            f" {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f};"
            f" {args.rate:g} creations/s for {time.monotonic() - began:.0f} s,"
            " 2 workers, NATS cluster of 3 (R3), PostgreSQL with a synchronous standby"
        )
        print(chaos.TABLE_HEAD)
        for report in reports:
            print(report.row())
    finally:
        await asyncio.to_thread(stack.stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=20, help="creations per second")
    parser.add_argument("--before", type=float, default=5, help="seconds of load before")
    parser.add_argument("--after", type=float, default=15, help="seconds of load after")
    asyncio.run(main(parser.parse_args()))
