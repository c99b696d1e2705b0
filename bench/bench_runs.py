"""Benchmark: runs through the whole stack (gateway -> auth -> billing -> runs -> Postgres
-> outbox -> NATS -> worker), in one of two modes (bench/runs_modes.py):

- `--mode template` (the default, the workload of RESULTS.md's issue 4 figures): a
  template-only workflow; free runs skip billing.
- `--mode realistic` (issue 15): one `llm` stage on a priced model served by a fake
  OpenAI-compatible server, then the template; every run reserves credits in billing
  when created and is captured when it finishes.

Targets (2-core machine): creation >= 1,000 runs/s with p99 < 150 ms at 64 connections
for 20 s, every accepted run completed and none duplicated; in realistic mode every run
also captured exactly once and `weft-admin credits check` clean. Template mode also
measures GET run polling (>= 3,000 req/s) and both measure POST -> `completed` observed
with ?wait (p50 <= 25 ms in template mode).

    python bench/bench_runs.py                                 # own temporary stack
    python bench/bench_runs.py --mode realistic
    python bench/bench_runs.py --mode realistic --duration 5   # a quick look
    python bench/bench_runs.py --mode realistic --accounts 16  # many payers, not one

The stack's PostgreSQL runs with production durability (bench/durability.py:
synchronous_commit=on, fsync=on), read back and printed. Load comes from `wrk` (see
bench_me.py). After the creation phase the script waits for every run to finish (and in
realistic mode for billing to capture them all), then counts, in Postgres: runs created
and by status, runs lost (answered 201 but not stored), any run with more than one
terminal event or a stage completed twice (a duplicate execution); in realistic mode
also LLM calls per run, captures per run and reservations left open, and it runs
`weft-admin credits check`. CPU per run by component covers creation, execution and
(realistic) capture of every run.
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

from bench import billing_checks, cpu, run_counts
from bench.durability import POSTGRES_SETTINGS, describe, settings_in_effect
from bench.runs_modes import MODES, Mode
from bench.wrk import wrk
from devstack.stack import Ports, Stack, StackOptions

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


def start_stack(args: argparse.Namespace, mode: Mode, root: Path) -> Stack:
    env = {
        "WEFT_GATEWAY_PROCESSES": str(args.gateway_processes),
        "WEFT_RATE_LIMIT_ENTERPRISE": "100000000",
        "WEFT_LOG_LEVEL": "WARNING",
        **mode.env,
    }
    if args.worker_concurrency:
        env["WEFT_WORKER_CONCURRENCY"] = str(args.worker_concurrency)
    stack = Stack(
        StackOptions(
            root=root,
            ports=Ports.free(gateways=1, workers=args.workers),
            llm="none",
            fake_llm=mode.fake_llm,
            extra_env=env,
            postgres_settings=POSTGRES_SETTINGS,
        )
    )
    stack.start()
    return stack


def stack_pids(stack: Stack) -> list[int]:
    """The stack's own processes (their children are found from them): CPU of other
    engineers' stacks on this machine must not count as ours."""
    return [pid for process in stack.processes.values() if (pid := process.pid) is not None]


def apply_workflow(stack: Stack, root: Path, definition: dict[str, Any]) -> str:
    path = root / f"{definition['slug']}.json"
    path.write_text(json.dumps(definition))
    return str(json.loads(stack.admin("workflows", "apply", str(path)).stdout)[0]["id"])


def make_accounts(stack: Stack, n: int, credits_usd: str) -> tuple[list[str], list[str]]:
    """`n` enterprise users, each granted `credits_usd`: their ids and API keys."""
    users, tokens = [], []
    for _ in range(n):
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        user = json.loads(
            stack.admin("users", "create", "--email", email, "--plan", "enterprise").stdout
        )
        stack.admin("credits", "grant", "--account", user["id"], "--amount-usd", credits_usd)
        token = json.loads(
            stack.admin("keys", "create", "--user", user["id"], "--name", "bench").stdout
        )["secret"]
        users.append(user["id"])
        tokens.append(token)
    return users, tokens


def load_and_count(
    args: argparse.Namespace,
    mode: Mode,
    stack: Stack,
    create_url: str,
    script: Path,
    users: list[str],
) -> dict[str, Any]:
    """The creation load, then everything its runs became: drain, captures, counts and
    CPU per run (its window ends once the last run is done, before the counting)."""
    result: dict[str, Any] = {}
    before = cpu.snapshot(stack_pids(stack))
    create = wrk(["-s", str(script), create_url], args.connections, args.duration, args.threads)
    create["accepted_201"] = create["requests"] - create["non_2xx"]
    result["create"] = create
    drained = asyncio.run(run_counts.wait_drained(stack.dsn, users, args.drain_timeout))
    create["seconds_to_drain_after_load"] = round(drained, 1)
    if mode.billed:
        # Billing captures from the terminal events, after the runs finished.
        captured = asyncio.run(billing_checks.wait_captured(stack.dsn, users, args.drain_timeout))
        create["seconds_to_capture_after_drain"] = round(captured, 1)
    time.sleep(1)  # the relay's last publishes
    # Creation, execution (and capture) of every run ("other" is whatever else ran on
    # the machine meanwhile, other stacks included), measured before the counting
    # queries below.
    spent = cpu.per_component(before, cpu.snapshot(stack_pids(stack)))
    create.update(asyncio.run(run_counts.count_runs(stack.dsn, users)))
    # Answered 201 but never stored. The reverse (stored, never answered) is at most
    # one request per connection, in flight when wrk stopped.
    create["lost"] = max(0, create["accepted_201"] - create["runs_in_db"])
    runs = max(1, create["runs_in_db"])
    per_run = {name: round(1000 * seconds / runs, 3) for name, seconds in spent.items()}
    # Weft's own processes: not the load generator, the fake model server or the rest.
    per_run["stack_total"] = round(
        sum(ms for name, ms in per_run.items() if name not in ("wrk", "fake_llm", "other")), 3
    )
    result["cpu_ms_per_run"] = per_run
    if mode.billed:
        calls = run_counts.llm_calls(f"http://127.0.0.1:{stack.options.ports.fake_llm}")
        result["llm_calls"] = {"calls": calls, "beyond_one_per_run": calls - create["runs_in_db"]}
        result["billing"] = asyncio.run(billing_checks.check_captures(stack.dsn, users))
        result["billing"]["captured_exactly_once"] = billing_checks.captured_exactly_once(
            result["billing"]
        )
        result["credits_check"] = billing_checks.credits_check(stack)
    return result


def polling(args: argparse.Namespace, stack: Stack, root: Path, token: str) -> dict[str, Any]:
    """GET run: a finished run (immutable, answered from the gateway's cache), then a
    run awaiting input (every poll reaches the runs service)."""
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
    auth = ["-H", f"Authorization: Bearer {token}"]
    finished = wrk([*auth, run_url], args.connections, args.poll_duration, args.threads)
    review_id = apply_workflow(stack, root, REVIEW_WORKFLOW)
    waiting_url = asyncio.run(waiting_run(stack.base_url, token, review_id))
    waiting = wrk([*auth, waiting_url], args.connections, args.poll_duration, args.threads)
    return {"get_run": finished, "get_run_waiting": waiting}


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    mode = MODES[args.mode]
    root = Path(tempfile.mkdtemp(prefix="weft-bench-runs-"))
    stack = start_stack(args, mode, root)
    try:
        result: dict[str, Any] = {
            "mode": mode.name,
            "postgres": asyncio.run(settings_in_effect(stack.dsn)),
            "workers": args.workers,
            "gateway_processes": args.gateway_processes,
            "accounts": args.accounts,
        }
        workflow_id = apply_workflow(stack, root, mode.workflow)
        # Far more runs than this machine can create: no run meets a 402.
        max_runs = 5_000 * args.duration + args.latency_runs + 1_000
        users, tokens = make_accounts(stack, args.accounts, mode.credits_usd(max_runs))
        create_url = f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs"
        script = post_script(root / "post.lua", tokens)
        result.update(load_and_count(args, mode, stack, create_url, script, users))
        result["post_to_completed"] = asyncio.run(
            latency_to_completed(stack.base_url, tokens[-1], workflow_id, args.latency_runs)
        )
        if mode.name == "template":  # the same gateway path whatever the workflow
            result.update(polling(args, stack, root, tokens[-1]))
        return result
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


def summary(result: dict[str, Any]) -> str:
    mode = MODES[result["mode"]]
    c, lat = result["create"], result["post_to_completed"]
    lines = [
        f"mode: {mode.name} ({mode.describe})",
        describe(result["postgres"]),
        f"create: {c['req_per_s']:.0f} runs/s, p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms,"
        f" accepted {c['accepted_201']}, non-2xx {c['non_2xx']}, in db {c['runs_in_db']},"
        f" {c['by_status']}, lost {c['lost']}, duplicates"
        f" {c['runs_with_duplicate_terminal_event']}/{c['runs_with_a_stage_completed_twice']}"
        " (terminal events / stages completed twice)",
        f"drain: last run done {c['seconds_to_drain_after_load']} s after the load",
    ]
    if mode.billed:
        b, calls, check = result["billing"], result["llm_calls"], result["credits_check"]
        lines[-1] += f"; captures done {c['seconds_to_capture_after_drain']} s after that"
        lines += [
            f"LLM calls: {calls['calls']} ({calls['beyond_one_per_run']} beyond one per run)",
            f"billing: {b['completed_captured_once']} of {b['completed']} completed runs"
            f" captured exactly once; {b['runs_without_capture']} runs without a capture,"
            f" {b['runs_captured_more_than_once']} captured more than once,"
            f" {b['captures_not_the_run_cost']} captures not the run's cost;"
            f" {b['open_reservations']} reservations open,"
            f" {b['reservations_without_run']} without a run; captured"
            f" {b['captured_micros'] / 1e6:.2f} USD -> "
            + ("OK" if b["captured_exactly_once"] else "NOT exactly once"),
            f"weft-admin credits check: exit {check['exit_code']}, "
            + json.dumps({k: v for k, v in check.items() if k != "exit_code"}),
        ]
    if "get_run" in result:
        g, w = result["get_run"], result["get_run_waiting"]
        lines += [
            f"GET run (finished, cached): {g['req_per_s']:.0f} req/s, p99 {g['p99_ms']:.1f} ms",
            f"GET run (awaiting_input, uncached): {w['req_per_s']:.0f} req/s,"
            f" p99 {w['p99_ms']:.1f} ms",
        ]
    lines += [
        f"POST -> completed: p50 {lat['p50_ms']} ms, p90 {lat['p90_ms']} ms",
        f"CPU per run (ms): {result['cpu_ms_per_run']}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="template")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--poll-duration", type=int, default=10, help="template mode only")
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--gateway-processes", type=int, default=1, help="the stack default; 2 measured no faster"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=0,
        help="runs each worker executes stage by stage at once (default: the worker's own)",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=1,
        help="accounts the creating load is spread over (realistic mode: each priced"
        " reservation and capture locks its account's row in billing)",
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=600, help="seconds to wait for runs, captures"
    )
    args = parser.parse_args()
    result = run_bench(args)
    print(json.dumps(result, indent=2))
    print(summary(result))


if __name__ == "__main__":
    main()
