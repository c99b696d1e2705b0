"""Batcher: alone a call goes out at once; under load calls share batches; each caller
gets its own answer or error; close() drains what was called and refuses the rest."""

import asyncio

import grpc
import pytest

from weftcore.batching import Batcher, BatcherClosed


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


async def test_batches_are_capped_by_size_and_a_big_item_goes_alone() -> None:
    backend = Backend()
    backend.release.clear()
    batcher = Batcher(backend.send, max_in_flight=1, size=lambda i: i, max_bytes=10)
    first = asyncio.ensure_future(batcher.call(0))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batcher.call(i)) for i in (4, 6, 2, 2, 12, 4)]
    await asyncio.sleep(0)
    backend.release.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [40, 60, 20, 20, 120, 40]
    # 4+6 fit in 10; 2+2 (12 would not); 12 alone although over the cap; then 4.
    assert backend.batches == [[0], [4, 6], [2, 2], [12], [4]]


async def test_a_batch_refused_as_a_whole_is_retried_item_by_item() -> None:
    sent: list[list[int]] = []

    async def refuses_pairs(items: list[int]) -> list[int | BaseException]:
        sent.append(items)
        if len(items) > 1:
            raise OverflowError("batch too large")
        if items == [13]:
            raise ValueError("unlucky")
        return [i * 10 for i in items]

    batcher = Batcher(
        refuses_pairs, max_in_flight=1, retry_alone=lambda e: isinstance(e, OverflowError)
    )
    first = asyncio.ensure_future(batcher.call(1))
    others = [asyncio.ensure_future(batcher.call(i)) for i in (2, 13, 3)]
    assert await first == 10
    answers = await asyncio.gather(*others, return_exceptions=True)
    assert answers[0] == 20 and answers[2] == 30
    assert isinstance(answers[1], ValueError)  # the item's own error, no one else's
    assert sent == [[1], [2, 13, 3], [2], [13], [3]]


async def test_other_whole_batch_failures_are_not_retried() -> None:
    sent: list[list[int]] = []

    async def down(items: list[int]) -> list[int | BaseException]:
        sent.append(items)
        raise ConnectionError("down")

    batcher = Batcher(down, max_in_flight=1, retry_alone=lambda e: isinstance(e, OverflowError))
    calls = [asyncio.ensure_future(batcher.call(i)) for i in range(3)]
    answers = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(a, ConnectionError) for a in answers)
    assert sent == [[0], [1, 2]]


async def test_close_drains_batches_out_and_calls_waiting_for_them() -> None:
    backend = Backend()
    backend.release.clear()
    batcher = Batcher(backend.send, max_in_flight=1)
    out = asyncio.ensure_future(batcher.call(0))
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(batcher.call(i)) for i in (2, 4)]
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0.01)
    assert not closing.done()  # the batch out is not finished yet

    backend.release.set()
    await asyncio.wait_for(closing, 1)

    assert await out == 0 and await asyncio.gather(*waiting) == [20, 40]
    assert backend.batches == [[0], [2, 4]]
    assert not batcher._tasks


async def test_calls_after_close_are_refused_as_unavailable() -> None:
    backend = Backend()
    batcher = Batcher(backend.send)
    await batcher.close()
    await batcher.close()  # idempotent
    with pytest.raises(BatcherClosed) as refused:
        await batcher.call(2)
    assert refused.value.grpc_code == grpc.StatusCode.UNAVAILABLE
    assert backend.batches == []


async def test_a_cancelled_close_fails_the_waiting_calls_and_stops_the_batches() -> None:
    backend = Backend()
    backend.release.clear()
    batcher = Batcher(backend.send, max_in_flight=1)
    out = asyncio.ensure_future(batcher.call(0))
    await asyncio.sleep(0)
    waiting = asyncio.ensure_future(batcher.call(2))
    await asyncio.sleep(0)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(batcher.close(), 0.01)

    for call in (out, waiting):
        with pytest.raises(BatcherClosed):
            await call
    assert backend.batches == [[0]] and not batcher._tasks
