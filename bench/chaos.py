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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack import chaos
from devstack.stack import Stack


def _account(stack: Stack) -> str:
    """An enterprise user (50,000 runs an hour: the load is not rate limited) with
    credits; answers its key."""
    email = f"chaos-{uuid.uuid4().hex[:8]}@example.com"
    created = stack.admin("users", "create", "--email", email, "--plan", "enterprise")
    user = json.loads(created.stdout)
    stack.admin("credits", "grant", "--account", user["id"], "--amount-usd", "1000")
    key = json.loads(stack.admin("keys", "create", "--user", user["id"], "--name", "chaos").stdout)
    return str(key["secret"])


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="weft-chaos-"))
    stack = Stack(chaos.ha_options(root, workers=2))
    await asyncio.to_thread(stack.start)
    try:
        token = _account(stack)
        workflow_id = await chaos.publish_workflow(stack, token)
        load = chaos.Load(stack.base_url, token, workflow_id, rate=args.rate)
        loading = asyncio.create_task(load.run())
        reports = []
        began = time.monotonic()
        try:
            for name, fault in chaos.faults(stack, nats_down_seconds=5):
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
