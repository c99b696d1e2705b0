"""Long-polls and event streams: woken by the notifier, not by re-reading on a timer,
and capped per account."""

import asyncio
from typing import Any

import pytest

from services.runs.domain.create import Caller
from services.runs.domain.open_waits import OpenWaits
from services.runs.domain.service import RunsService
from services.runs.domain.watch import RunWatcher
from services.runs.store.notify import RUN_STATUS_CHANNEL, Notifier
from weftcore.errors import ResourceExhausted

CALLER = Caller("usr_1", "", "pro", None)


class FakePool:
    """Answers the runs row and counts the statements (and their SQL)."""

    def __init__(self) -> None:
        self.status = "running"
        self.statements: list[str] = []

    def _row(self) -> dict[str, Any]:
        return {"id": "run_1", "user_id": "usr_1", "workflow_id": "wf_1", "status": self.status}

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any]:
        self.statements.append(sql)
        return self._row()

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.statements.append(sql)
        return self.status

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.statements.append(sql)
        return []


def _notifier() -> Notifier:
    return Notifier("postgresql://unused", "runs", lambda: None)


async def test_a_long_poll_reads_again_only_when_notified() -> None:
    pool, notifier = FakePool(), _notifier()
    service = RunsService(pool, notifier, None, OpenWaits(5), None)  # type: ignore[arg-type]
    poll = asyncio.create_task(service.get_run(CALLER, "run_1", wait_seconds=3))
    await asyncio.sleep(2.5)  # longer than the old 2 s re-read
    assert len(pool.statements) == 1  # the first read only
    pool.status = "completed"
    notifier.dispatch(RUN_STATUS_CHANNEL, "run_1")
    view = await asyncio.wait_for(poll, 1)
    assert view.row["status"] == "completed"
    assert service.open_waits.count("usr_1") == 0


async def test_open_waits_are_capped_per_account_and_released() -> None:
    waits = OpenWaits(2)
    with waits.hold("a"), waits.hold("a"):
        with pytest.raises(ResourceExhausted) as info, waits.hold("a"):
            pass
        assert info.value.code == "RATE_LIMITED"
        assert info.value.extra == {"limit": 2, "remaining": 0, "retry_after": 1}
        with waits.hold("b"):  # another account is not affected
            assert waits.count("b") == 1
    assert waits.count("a") == 0 and waits.count("b") == 0


class FakeNats:
    is_connected = True

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    async def subscribe(self, subject: str, cb: Any) -> Any:
        self.callbacks.append(cb)

        class Sub:
            async def unsubscribe(self) -> None:
                return None

        return Sub()


async def _stream_for(watcher: RunWatcher, seconds: float) -> None:
    async def consume() -> None:
        async for _ in watcher.events("run_1"):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_an_event_stream_waits_for_a_wake_up_when_subscribed() -> None:
    pool, nats = FakePool(), FakeNats()
    await _stream_for(RunWatcher(pool, nats, _notifier(), recheck_seconds=0.05), 0.5)  # type: ignore[arg-type]
    # One read of the events and one of the status, then nothing until woken.
    assert len(pool.statements) == 2


async def test_an_event_stream_without_nats_falls_back_to_re_reading() -> None:
    pool = FakePool()
    await _stream_for(RunWatcher(pool, None, _notifier(), recheck_seconds=0.05), 0.5)  # type: ignore[arg-type]
    assert len(pool.statements) > 6


async def test_a_status_change_wakes_an_event_stream() -> None:
    pool, nats, notifier = FakePool(), FakeNats(), _notifier()
    watcher = RunWatcher(pool, nats, notifier)  # type: ignore[arg-type]
    task = asyncio.create_task(_stream_for(watcher, 0.5))
    await asyncio.sleep(0.2)
    before = len(pool.statements)
    notifier.dispatch(RUN_STATUS_CHANNEL, "run_1")
    await task
    assert len(pool.statements) == before + 2
