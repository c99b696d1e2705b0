"""Faults under load on an HA stack (`StackOptions(ha=True)`): what survives what.

A bounded creation load runs while faults are injected one at a time. The load is a
careful client: each run has its own Idempotency-Key, and a failed attempt (a 5xx or a
refused connection) is retried with the same key until it is accepted, so "accepted" is
every run the client was told exists. After each fault the accounting checks, from the
databases: every accepted run completed (lost: 0), no key made two runs (duplicated: 0),
every completed run was captured exactly once, and the longest stretch during which
creations failed. Used by tests/integration/test_chaos.py (short) and bench/chaos.py.
"""

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from devstack.stack import Ports, Stack, StackOptions

TERMINAL = ("completed", "failed", "canceled")
# A realistic run: a priced llm stage (fake provider), so every run reserves and is captured.
WORKFLOW = {
    "name": "Chaos",
    "stages": [{"id": "ask", "type": "llm", "model": "fake:echo", "prompt": "{{ input_text }}"}],
}
# Short recovery timings, so a killed worker's runs are taken over within a fault's time.
FAST_RECOVERY = {
    "WEFT_WORKER_HEARTBEAT_SECONDS": "1",
    "WEFT_WORKER_STALE_SECONDS": "5",
    "WEFT_WORKER_ACK_WAIT_SECONDS": "5",
    "WEFT_WORKER_RECOVERY_INTERVAL_SECONDS": "1",
    "WEFT_WORKER_PENDING_RECOVERY_SECONDS": "10",
}


def ha_options(root: Path, workers: int = 1) -> StackOptions:
    """An HA stack for the chaos suite: no local model, the fake provider priced, quick
    recovery."""
    return StackOptions(
        root=root,
        ports=Ports.free(ha=True, workers=workers),
        llm="none",
        fake_llm=True,
        ha=True,
        extra_env={
            "WEFT_PRICES": '{"fake:echo": [1000000, 2000000]}',
            "WEFT_WORKFLOWS_DIR": "",
            **FAST_RECOVERY,
        },
    )


async def publish_workflow(stack: Stack, token: str) -> str:
    """WORKFLOW, created and published by the key's owner; answers its id."""
    definition = {**WORKFLOW, "slug": f"chaos-{uuid.uuid4().hex[:8]}"}
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{stack.base_url}/api/v1/workflows"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(base, json=definition) as r:
            workflow_id: str = (await r.json())["data"]["id"]
        async with http.post(f"{base}/{workflow_id}/publish") as r:
            if r.status != 201:
                raise RuntimeError(f"publish failed: {await r.text()}")
    return workflow_id


def faults(stack: Stack, nats_down_seconds: float) -> list[tuple[str, Callable[[], None]]]:
    """The suite's faults, in the order they are injected."""
    return [
        (
            f"NATS node killed, back after {nats_down_seconds:g} s",
            kill_and_restart(stack, "nats2", nats_down_seconds),
        ),
        ("PostgreSQL primary killed, standby promoted", fail_over_postgres(stack)),
        ("worker SIGKILLed", kill_and_restart(stack, "worker")),
        ("runs service SIGKILLed", kill_and_restart(stack, "runs")),
        ("billing SIGKILLed", kill_and_restart(stack, "billing")),
    ]


@dataclass
class Load:
    """Creates runs of one workflow at `rate` per second until stopped."""

    base_url: str
    token: str
    workflow_id: str
    rate: float
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> run id
    failures: list[float] = field(default_factory=list)  # monotonic times of failed tries
    successes: list[float] = field(default_factory=list)  # ... of accepted creations
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            pending: set[asyncio.Task[None]] = set()
            while not self._stop.is_set():
                task = asyncio.create_task(self._one(http, f"chaos-{uuid.uuid4().hex}"))
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.sleep(1 / self.rate)
            await asyncio.gather(*pending)

    def stop(self) -> None:
        self._stop.set()

    async def _one(self, http: aiohttp.ClientSession, key: str) -> None:
        url = f"{self.base_url}/api/v1/workflows/{self.workflow_id}/runs"
        body = {"input_text": key}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                async with http.post(url, json=body, headers={"Idempotency-Key": key}) as r:
                    answer = await r.json(content_type=None)
                    if r.status == 201:
                        self.accepted[key] = answer["data"]["id"]
                        self.successes.append(time.monotonic())
                        return
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            self.failures.append(time.monotonic())
            await asyncio.sleep(0.5)  # the same key again: never a second run

    def longest_outage(self, since: float, until: float) -> float:
        """The longest stretch between `since` and `until` without an accepted creation
        (at this load's rate the normal gap is 1/rate: a request that hangs counts as
        much as one that fails)."""
        times = sorted(t for t in self.successes if since <= t <= until)
        marks = [since, *times, until]
        return max(b - a for a, b in itertools.pairwise(marks))


@dataclass(frozen=True)
class FaultReport:
    fault: str
    accepted: int
    completed: int
    lost: int
    duplicated: int
    captured_once: int
    capture_problems: int
    longest_outage_seconds: float

    def row(self) -> str:
        return (
            f"| {self.fault} | {self.accepted} | {self.completed} | {self.lost} |"
            f" {self.duplicated} | {self.captured_once} of {self.completed}"
            f" | {self.longest_outage_seconds:.1f} s |"
        )


async def settle(stack: Stack, load: Load, keys: list[str], timeout: float) -> dict[str, Any]:
    """Wait until every run of `keys` is terminal and captured (or `timeout`); answers the
    counts from the databases."""
    run_ids = [load.accepted[k] for k in keys]
    deadline = time.monotonic() + timeout
    conn = await _connect(stack)
    try:
        while True:
            statuses = dict(
                await conn.fetch(
                    "SELECT id, status FROM runs.runs WHERE id = ANY($1::text[])", run_ids
                )
            )
            captures = dict(
                await conn.fetch(
                    "SELECT run_id, count(*) FROM billing.ledger WHERE kind = 'capture'"
                    " AND run_id = ANY($1::text[]) GROUP BY run_id",
                    run_ids,
                )
            )
            done = [r for r in run_ids if statuses.get(r) in TERMINAL]
            if (len(done) == len(run_ids) and len(captures) == len(run_ids)) or (
                time.monotonic() > deadline
            ):
                break
            await asyncio.sleep(1)
        made = await conn.fetchval(
            "SELECT count(*) FROM runs.runs WHERE input_text = ANY($1::text[])", keys
        )
    finally:
        await conn.close()
    completed = [r for r in run_ids if statuses.get(r) == "completed"]
    return {
        "accepted": len(run_ids),
        "completed": len(completed),
        "lost": len(run_ids) - len(completed),
        "duplicated": int(made) - len(run_ids),
        "captured_once": sum(1 for r in completed if captures.get(r) == 1),
        "capture_problems": sum(1 for r in completed if captures.get(r, 0) != 1),
    }


async def _connect(stack: Stack) -> asyncpg.Connection:
    deadline = time.monotonic() + 60
    while True:
        try:
            return await asyncpg.connect(stack.dsn)
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def inject(
    stack: Stack,
    load: Load,
    name: str,
    fault: Callable[[], None],
    *,
    before: float = 2.0,
    after: float = 4.0,
    settle_seconds: float = 90.0,
) -> FaultReport:
    """Let the load run, apply `fault` (blocking calls run in a thread), keep loading,
    then account for every run accepted from just before the fault until after it."""
    await asyncio.sleep(before)
    began = time.monotonic()
    known = set(load.accepted)
    await asyncio.to_thread(fault)
    await asyncio.sleep(after)
    outage = load.longest_outage(began, time.monotonic())
    keys = [k for k in list(load.accepted) if k not in known]
    counts = await settle(stack, load, keys, settle_seconds)
    return FaultReport(fault=name, longest_outage_seconds=outage, **counts)


def kill_and_restart(stack: Stack, name: str, down_seconds: float = 2.0) -> Callable[[], None]:
    def fault() -> None:
        stack.kill(name)
        time.sleep(down_seconds)
        stack.start(name)

    return fault


def fail_over_postgres(stack: Stack) -> Callable[[], None]:
    """SIGKILL the primary and promote the standby (the services find it through the
    multi-host DSN's target_session_attrs=read-write)."""

    def fault() -> None:
        assert stack.standby is not None
        stack.kill("postgres")
        stack.standby.promote()

    return fault


TABLE_HEAD = (
    "| fault | runs accepted | completed | lost | duplicated | captured exactly once"
    " | longest creation outage |\n| --- | --- | --- | --- | --- | --- | --- |"
)
