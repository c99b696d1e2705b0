"""BackgroundTasks: loops are owned by name, restarted after a crash (logged), and
cancelled and awaited on close."""

import asyncio
import itertools
import logging

import pytest

from weftcore.background import BackgroundTasks


async def test_close_cancels_and_awaits_every_loop() -> None:
    tasks = BackgroundTasks()
    cleaned: list[str] = []

    def forever(name: str) -> asyncio.Event:
        started = asyncio.Event()

        async def loop() -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0)  # cleanup that itself awaits still completes
                cleaned.append(name)

        tasks.start(name, loop)
        return started

    started = [forever("a"), forever("b")]
    await asyncio.gather(*(event.wait() for event in started))
    assert sorted(tasks.running()) == ["a", "b"]

    await tasks.close()

    assert sorted(cleaned) == ["a", "b"]
    assert tasks.running() == []


async def test_a_crashing_loop_is_logged_and_restarted_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = BackgroundTasks(first_delay=0.01, max_delay=0.04)
    runs: list[float] = []
    steady = asyncio.Event()

    async def flaky() -> None:
        runs.append(asyncio.get_running_loop().time())
        if len(runs) == 4:
            steady.set()  # the fourth run stays up
            await asyncio.Event().wait()
        raise RuntimeError(f"boom {len(runs)}")

    with caplog.at_level(logging.ERROR, logger="weftcore.background"):
        tasks.start("flaky", flaky)
        await asyncio.wait_for(steady.wait(), 2)
        await tasks.close()

    crashes = [r for r in caplog.records if r.getMessage().startswith("background task crashed")]
    assert len(crashes) == 3
    assert all(r.task == "flaky" and r.exc_info for r in crashes)  # type: ignore[attr-defined]
    assert "boom 1" in str(crashes[0].exc_info[1])  # type: ignore[index]
    assert [r.restart_in_seconds for r in crashes] == [0.01, 0.02, 0.04]  # type: ignore[attr-defined]
    gaps = [later - earlier for earlier, later in itertools.pairwise(runs)]
    assert gaps[0] >= 0.009 and gaps[2] >= 0.039


async def test_a_loop_that_returns_is_not_restarted() -> None:
    tasks = BackgroundTasks(first_delay=0.001)
    calls: list[int] = []

    async def once() -> None:
        calls.append(1)

    tasks.start("once", once)
    await asyncio.sleep(0.05)
    assert calls == [1] and tasks.running() == []
    tasks.start("once", once)  # a finished name may be used again
    await tasks.close()


async def test_close_is_idempotent_and_final() -> None:
    tasks = BackgroundTasks()
    tasks.start("idle", lambda: asyncio.sleep(3600))
    await tasks.close()
    await tasks.close()
    with pytest.raises(RuntimeError, match="closed"):
        tasks.start("late", lambda: asyncio.sleep(0))


async def test_two_loops_cannot_share_a_name() -> None:
    tasks = BackgroundTasks()
    tasks.start("relay", lambda: asyncio.sleep(3600))
    with pytest.raises(ValueError, match="relay"):
        tasks.start("relay", lambda: asyncio.sleep(3600))
    await tasks.close()
