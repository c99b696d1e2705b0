"""`weft-stack up`: the whole Weft system on this machine, until Ctrl-C.

Real servers from pip wheels (PostgreSQL, NATS JetStream, SeaweedFS S3, the embedded
LLM), then every service, worker and gateway; data is kept in `.weft/data`.
"""

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

from devstack.demo import DEMO_EMAIL, curl_line, demo_invite, ensure_demo
from devstack.stack import PROJECT_ROOT, Ports, Stack, StackOptions


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="weft-stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything and wait for Ctrl-C")
    up.add_argument("--data", type=Path, default=PROJECT_ROOT / ".weft" / "data")
    up.add_argument("--gateways", type=int, default=1, help="gateway processes (ports 8080+)")
    up.add_argument("--workers", type=int, default=1, help="run worker processes")
    up.add_argument("--no-llm", action="store_true", help="skip the embedded model")
    up.add_argument(
        "--ha",
        action="store_true",
        help="a NATS cluster of 3 (streams at 3 replicas) and a PostgreSQL streaming standby",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    stop_requested = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    options = StackOptions(
        root=args.data,
        ports=Ports.well_known(gateways=args.gateways, workers=args.workers, ha=args.ha),
        llm="none" if args.no_llm else "embedded",
        ha=args.ha,
    )
    began = time.monotonic()
    stack = Stack(options)
    print("weft: starting the stack ...", flush=True)
    try:
        timings = stack.start()
        demo = asyncio.run(
            ensure_demo(
                stack.env["WEFT_AUTH_ADDR"],
                stack.env["WEFT_BILLING_ADDR"],
                args.data.parent / "demo.json",
            )
        )
        invite_url = asyncio.run(demo_invite(stack.env["WEFT_AUTH_ADDR"], stack.base_url))
        ready = time.monotonic() - began
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        print(f"weft: ready in {ready:.1f}s ({phases})")
        print(f"weft: gateway {stack.base_url}  (readiness: {stack.base_url}/readyz)")
        metrics = ", ".join(
            f"{name} :{url.split(':')[2].split('/')[0]}" for name, url in stack.metrics_urls.items()
        )
        print(f"weft: /metrics on {metrics} (docs/operations.md)")
        print(f"weft: demo user {demo.user_id}, key {demo.key_id}")
        print("weft: try it:\n")
        print(curl_line(stack.base_url, demo.token))
        print(
            "\nweft: then poll the run with "
            f"curl -s '{stack.base_url}/api/v1/workflow-runs/<run id>?wait=30' "
            f"-H 'Authorization: Bearer {demo.token}'"
        )
        print(
            f"\nweft: console {stack.base_url}/app - set a password for {DEMO_EMAIL} at\n"
            f"  {invite_url}\n  (one-time link, 72 h), then sign in there as {DEMO_EMAIL}."
        )
        print("weft: logs in", args.data / "logs", "- Ctrl-C stops everything.", flush=True)
        while not stop_requested:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nweft: stopping ...", flush=True)
        stack.stop()
        print("weft: stopped.", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
