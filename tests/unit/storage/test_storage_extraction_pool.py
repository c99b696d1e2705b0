"""Per-account slots (AccountLimiter) and the extraction pool built on them: one account's
files wait for its own slots, never another account's, and never for ever."""

import asyncio
import threading
from pathlib import Path

import pytest

from services.storage.account_limiter import AccountLimiter
from services.storage.extract import ExtractResult, Limits
from services.storage.extract.pool import ExtractionPool

WAIT = 10.0  # a safety bound on waits for events, never what a test measures


async def _settle() -> None:
    """Lets every task that can run, run (a few loop turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_account_at_its_limit_waits_and_other_accounts_go_on() -> None:
    limiter = AccountLimiter(per_account=2)
    await limiter.acquire("a")
    await limiter.acquire("a")
    third = asyncio.create_task(limiter.acquire("a"))
    await _settle()
    assert not third.done() and limiter.in_use("a") == 2
    await asyncio.wait_for(limiter.acquire("b"), WAIT)  # not behind a's waiter
    assert limiter.in_use("b") == 1
    limiter.release("a")
    await asyncio.wait_for(third, WAIT)
    assert limiter.in_use("a") == 2


async def test_an_accounts_waiters_go_in_order() -> None:
    limiter = AccountLimiter(per_account=1)
    await limiter.acquire("a")
    order: list[int] = []

    async def wait(n: int) -> None:
        await limiter.acquire("a")
        order.append(n)
        limiter.release("a")

    waiters = [asyncio.create_task(wait(n)) for n in range(5)]
    await _settle()
    limiter.release("a")
    await asyncio.wait_for(asyncio.gather(*waiters), WAIT)
    assert order == [0, 1, 2, 3, 4]


async def test_a_cancelled_waiter_holds_nothing_and_idle_accounts_are_forgotten() -> None:
    limiter = AccountLimiter(per_account=1)
    await limiter.acquire("a")
    waiter = asyncio.create_task(limiter.acquire("a"))
    await _settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limiter.release("a")
    assert limiter.in_use("a") == 0
    assert limiter._accounts == {}  # no state kept for accounts with nobody in them
    await asyncio.wait_for(limiter.acquire("a"), WAIT)


def test_an_account_needs_at_least_one_slot() -> None:
    with pytest.raises(ValueError):
        AccountLimiter(per_account=0)


class Runner:
    """Stands in for Sandbox.run: files named slow* block until `gate` opens."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started: list[str] = []
        self._changed = threading.Condition()

    def run(self, path: Path, kind: str, limits: Limits, text_path: Path) -> ExtractResult:
        with self._changed:
            self.started.append(path.name)
            self._changed.notify_all()
        if path.name.startswith("slow"):
            assert self.gate.wait(WAIT)
        return ExtractResult("extracted", text_chars=len(path.name))

    async def wait_started(self, count: int) -> None:
        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: len(self.started) >= count, WAIT)

        assert await asyncio.to_thread(wait), self.started


def _extract(pool: ExtractionPool, account: str, name: str) -> "asyncio.Task[ExtractResult]":
    return asyncio.create_task(pool.extract(account, Path(name), "txt", Limits(), Path("t")))


async def test_one_account_cannot_take_every_worker() -> None:
    runner = Runner()
    pool = ExtractionPool(runner.run, workers=3, per_account=2, queue_seconds=WAIT)
    try:
        slow = [_extract(pool, "usr_a", f"slow{n}") for n in range(5)]
        await runner.wait_started(2)
        await _settle()
        assert pool.in_use("usr_a") == 2
        # Another account's file is extracted while the first account's still block.
        other = await asyncio.wait_for(
            pool.extract("usr_b", Path("b"), "txt", Limits(), Path("t")), WAIT
        )
        assert other.status == "extracted"
        assert not any(task.done() for task in slow)
        assert sorted(runner.started) == ["b", "slow0", "slow1"]
        runner.gate.set()
        results = await asyncio.wait_for(asyncio.gather(*slow), WAIT)
        # The account's other files waited their turn; none of them failed.
        assert [r.status for r in results] == ["extracted"] * 5
        assert pool.in_use("usr_a") == 0
    finally:
        runner.gate.set()
        pool.close()


async def test_a_file_that_gets_no_slot_in_time_is_failed_not_refused() -> None:
    runner = Runner()
    pool = ExtractionPool(runner.run, workers=1, per_account=1, queue_seconds=0.05)
    try:
        first = _extract(pool, "usr_a", "slow")
        await runner.wait_started(1)
        late = await asyncio.wait_for(
            pool.extract("usr_a", Path("late"), "txt", Limits(), Path("t")), WAIT
        )
        assert late.status == "failed"
        assert "did not start within 0.05 seconds" in late.error
        runner.gate.set()
        assert (await asyncio.wait_for(first, WAIT)).status == "extracted"
        assert runner.started == ["slow"]  # the late file never reached a worker
    finally:
        runner.gate.set()
        pool.close()


async def test_a_cancelled_caller_keeps_its_slots_until_its_thread_is_done() -> None:
    runner = Runner()
    pool = ExtractionPool(runner.run, workers=1, per_account=1, queue_seconds=WAIT)
    try:
        first = _extract(pool, "usr_a", "slow")
        await runner.wait_started(1)
        first.cancel()
        next_file = _extract(pool, "usr_b", "next")
        await asyncio.sleep(0.05)
        # The worker is still busy with the cancelled caller's file: nothing else starts.
        assert runner.started == ["slow"] and not next_file.done()
        runner.gate.set()
        assert (await asyncio.wait_for(next_file, WAIT)).status == "extracted"
        assert pool.in_use("usr_a") == 0 and pool.in_use("usr_b") == 0
    finally:
        runner.gate.set()
        pool.close()


def test_per_account_must_fit_in_the_pool() -> None:
    with pytest.raises(ValueError):
        ExtractionPool(Runner().run, workers=2, per_account=3, queue_seconds=1)
