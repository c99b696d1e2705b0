"""Concurrent calls that share one batch call.

A call goes out at once while fewer than `max_in_flight` batches are out; otherwise it
waits, with every call arriving meanwhile, for the next batch. Alone, a call costs what it
did; under load, one round trip (and one RPC's fixed cost on both sides) carries many.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")

# One answer per item, in order: a value, or the exception that item's call raises.
SendBatch = Callable[[list[Item]], Awaitable[list[Answer | BaseException]]]


class Batcher(Generic[Item, Answer]):
    def __init__(
        self,
        send: "SendBatch[Item, Answer]",
        *,
        max_batch: int = 128,
        max_in_flight: int = 4,
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, item: Item) -> Answer:
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        self._send_waiting()
        return await answer

    def _send_waiting(self) -> None:
        while self._waiting and self._in_flight < self._max_in_flight:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            # A caller that gave up (cancelled) before its batch went out is left out.
            batch = [(item, answer) for item, answer in batch if not answer.done()]
            if not batch:
                continue
            self._in_flight += 1
            task = asyncio.create_task(self._send_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_batch(self, batch: list[tuple[Item, "asyncio.Future[Answer]"]]) -> None:
        try:
            answers = await self._send([item for item, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers for {len(batch)} items")
        except BaseException as exc:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        finally:
            self._in_flight -= 1
            self._send_waiting()
        for (_, answer), outcome in zip(batch, answers, strict=True):
            if answer.done():
                continue
            if isinstance(outcome, BaseException):
                answer.set_exception(outcome)
            else:
                answer.set_result(outcome)
