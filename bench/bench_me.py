"""Benchmark: authenticated GET /api/v1/me (issue 3 target: >= 4,000 req/s, p99 < 50 ms
at 64 connections for 15 s on the 2-core machine).

    python bench/bench_me.py                      # own temporary stack, 2 gateway processes
    python bench/bench_me.py --url http://127.0.0.1:8080 --token wft_live_...

Load comes from `wrk` (Debian package `wrk`; installed with apt-get when missing), a
bounded C load generator on loopback: fixed connections, fixed duration. The gateway
caches the authenticated principal for a few seconds, so this measures the gateway's
request path (auth cache hit, scope/plan checks, JSON) plus one Authenticate call per
process per cache period. Its own stack's PostgreSQL runs with production durability
(bench/durability.py: synchronous_commit=on), read back and printed.
"""

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.durability import POSTGRES_SETTINGS, describe, settings_in_effect
from bench.wrk import wrk


def run_wrk(url: str, token: str, connections: int, seconds: int, threads: int) -> dict:
    result = wrk(
        ["-H", f"Authorization: Bearer {token}", f"{url.rstrip('/')}/api/v1/me"],
        connections,
        seconds,
        threads,
    )
    return {**result, "connections": connections, "seconds": seconds}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes used so far."""
    total = 0
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def check_token(url: str, token: str) -> None:
    import urllib.request

    req = urllib.request.Request(
        f"{url.rstrip('/')}/api/v1/me", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=5) as response:
        assert response.status == 200, response.status


def with_own_stack(args: argparse.Namespace) -> dict:
    from devstack.stack import Ports, Stack, StackOptions

    root = Path(tempfile.mkdtemp(prefix="weft-bench-"))
    ports = Ports.free(gateways=1, workers=0)
    options = StackOptions(
        root=root,
        ports=ports,
        llm="none",
        extra_env={
            "WEFT_GATEWAY_PROCESSES": str(args.gateway_processes),
            "WEFT_PUBLIC_BASE_URL": f"http://127.0.0.1:{ports.gateways[0]}",
        },
        postgres_settings=POSTGRES_SETTINGS,
    )
    stack = Stack(options)
    stack.start()
    try:
        postgres = asyncio.run(settings_in_effect(stack.dsn))
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        user = json.loads(stack.admin("users", "create", "--email", email, "--plan", "pro").stdout)
        key = json.loads(
            stack.admin("keys", "create", "--user", user["id"], "--name", "bench").stdout
        )
        check_token(stack.base_url, key["secret"])
        from devstack.process_tree import process_tree

        gateway_pid = stack.processes["gateway"].pid
        assert gateway_pid is not None
        pids = process_tree(gateway_pid)
        before = cpu_seconds(pids)
        result = run_wrk(
            stack.base_url, key["secret"], args.connections, args.duration, args.threads
        )
        used = cpu_seconds(pids) - before
        result["gateway_processes"] = args.gateway_processes
        result["postgres"] = postgres
        # Independent of other load on the machine: the gateway's CPU cost per request.
        result["gateway_cpu_us_per_request"] = round(used / max(1, result["requests"]) * 1e6, 1)
        result["load_average_1m"] = os.getloadavg()[0]
        return result
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running gateway (else a temporary stack is started)")
    parser.add_argument("--token", help="an API key of a paid-plan user (with --url)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--gateway-processes", type=int, default=2)
    args = parser.parse_args()
    if args.url:
        if not args.token:
            parser.error("--token is required with --url")
        check_token(args.url, args.token)
        result = run_wrk(args.url, args.token, args.connections, args.duration, args.threads)
    else:
        result = with_own_stack(args)
    print(json.dumps(result, indent=2))
    if "postgres" in result:
        print(describe(result["postgres"]))
    print(
        f"GET /api/v1/me: {result['req_per_s']:.0f} req/s, p50 {result['p50_ms']:.2f} ms,"
        f" p99 {result['p99_ms']:.2f} ms ({result['connections']} connections,"
        f" {result['seconds']} s, non-2xx {result['non_2xx']})"
    )


if __name__ == "__main__":
    main()
