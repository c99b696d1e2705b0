"""Batcher: alone a call goes out at once; under load calls share batches; each caller
gets its own answer or error."""

import asyncio

import pytest

from weftcore.batching import Batcher


class Backend:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def send(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        await self.release.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_a_lone_call_goes_out_at_once() -> None:
    backend = Backend()
    assert await Batcher(backend.send).call(4) == 40
    assert backend.batches == [[4]]


async def test_calls_made_while_batches_are_out_share_the_next() -> None:
    backend = Backend()
    backend.release.clear()
    batcher = Batcher(backend.send, max_in_flight=1)
    calls = [asyncio.ensure_future(batcher.call(i)) for i in (0, 2, 4, 6, 8)]
    await asyncio.sleep(0.01)
    assert backend.batches == [[0]]  # the rest wait for the one out
    backend.release.set()
    assert await asyncio.gather(*calls) == [0, 20, 40, 60, 80]
    assert backend.batches == [[0], [2, 4, 6, 8]]


async def test_each_caller_gets_its_own_error() -> None:
    backend = Backend()
    batcher = Batcher(backend.send, max_in_flight=1)
    answers = await asyncio.gather(*(batcher.call(i) for i in range(4)), return_exceptions=True)
    assert answers[0] == 0 and answers[2] == 20
    assert isinstance(answers[1], ValueError) and str(answers[1]) == "odd 1"
    assert isinstance(answers[3], ValueError) and str(answers[3]) == "odd 3"


async def test_a_failed_batch_fails_its_callers_only() -> None:
    async def down(items: list[int]) -> list[int | BaseException]:
        if 99 in items:
            raise ConnectionError("down")
        return list(items)

    batcher = Batcher(down, max_in_flight=1)
    first = asyncio.ensure_future(batcher.call(99))
    second = asyncio.ensure_future(batcher.call(1))
    with pytest.raises(ConnectionError):
        await first
    assert await second == 1


async def test_a_caller_gone_before_its_batch_is_left_out() -> None:
    backend = Backend()
    backend.release.clear()
    batcher = Batcher(backend.send, max_in_flight=1)
    first = asyncio.ensure_future(batcher.call(0))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(batcher.call(2))
    kept = asyncio.ensure_future(batcher.call(4))
    await asyncio.sleep(0)
    gone.cancel()
    backend.release.set()
    assert await first == 0 and await kept == 40
    assert backend.batches == [[0], [4]]
