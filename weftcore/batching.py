"""Concurrent calls that share one batch call.

A call goes out at once while fewer than `max_in_flight` batches are out; otherwise it
waits, with every call arriving meanwhile, for the next batch. Alone, a call costs what it
did; under load, one round trip (and one RPC's fixed cost on both sides) carries many.

A batch holds at most `max_batch` items and, given `size`, at most `max_bytes` of them
(an item bigger than that on its own still goes, alone): the batch call's message cap is
then never passed because several callers happened to arrive together. A batch whose
call fails as a whole for a reason `retry_alone` accepts is sent again one item per call,
so an error one item causes is that item's alone.

`close()` (on the owner's shutdown) drains: calls already made still go out and get
their answers, new ones are refused with `BatcherClosed`; it returns once no batch task
is left. Cut short (cancelled), it fails the calls still waiting and cancels the rest.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from weftcore.errors import Unavailable

Item = TypeVar("Item")
Answer = TypeVar("Answer")

# One answer per item, in order: a value, or the exception that item's call raises.
SendBatch = Callable[[list[Item]], Awaitable[list[Answer | BaseException]]]


def _never(exc: BaseException) -> bool:
    return False


class BatcherClosed(Unavailable):
    """A call made after close(): the process is shutting down, another may answer."""

    def __init__(self) -> None:
        super().__init__("This process is shutting down; retry the request.")


class Batcher(Generic[Item, Answer]):
    def __init__(
        self,
        send: "SendBatch[Item, Answer]",
        *,
        max_batch: int = 128,
        max_in_flight: int = 4,
        size: Callable[[Item], int] | None = None,
        max_bytes: int = 0,
        retry_alone: Callable[[BaseException], bool] = _never,
    ) -> None:
        if size is not None and max_bytes <= 0:
            raise ValueError("max_bytes must be positive when size is given")
        self._send = send
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._size = size
        self._max_bytes = max_bytes
        self._retry_alone = retry_alone
        self._waiting: list[tuple[Item, int, asyncio.Future[Answer]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._aborted = False  # close() was cut short: nothing more goes out

    async def call(self, item: Item) -> Answer:
        if self._closed:
            raise BatcherClosed()
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        # Measured once, here: the caller pays for its own item's size.
        self._waiting.append((item, self._size(item) if self._size else 0, answer))
        self._send_waiting()
        return await answer

    async def close(self) -> None:
        """Refuse new calls; wait until every call already made has its answer (those
        waiting for a batch go out as batches finish). Idempotent. If cancelled, the
        calls still waiting get BatcherClosed and the batches out are cancelled."""
        self._closed = True
        try:
            while self._tasks:
                await asyncio.wait(set(self._tasks))
        except asyncio.CancelledError:
            self._abort()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            raise

    def _abort(self) -> None:
        self._aborted = True
        waiting, self._waiting = self._waiting, []
        for _, _, answer in waiting:
            if not answer.done():
                answer.set_exception(BatcherClosed())
        for task in self._tasks:
            task.cancel()

    def _send_waiting(self) -> None:
        if self._aborted:
            return
        while self._waiting and self._in_flight < self._max_in_flight:
            batch = self._next_batch()
            if not batch:
                continue
            self._in_flight += 1
            task = asyncio.create_task(self._send_batch(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _next_batch(self) -> list[tuple[Item, "asyncio.Future[Answer]"]]:
        """Takes the next batch off the waiting list, in arrival order, within the caps.
        A caller that gave up (cancelled) before its batch went out is left out."""
        taken, total = 0, 0
        for _, size, _ in self._waiting:
            if taken == self._max_batch or (
                self._size is not None and taken and total + size > self._max_bytes
            ):
                break
            taken += 1
            total += size
        batch = self._waiting[:taken]
        del self._waiting[:taken]
        return [(item, answer) for item, _, answer in batch if not answer.done()]

    async def _send_batch(self, batch: list[tuple[Item, "asyncio.Future[Answer]"]]) -> None:
        try:
            answers = await self._answers([item for item, _ in batch])
        except BaseException as exc:
            cut = self._aborted and isinstance(exc, asyncio.CancelledError)
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(BatcherClosed() if cut else exc)
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

    async def _answers(self, items: list[Item]) -> list[Answer | BaseException]:
        """One answer per item; a whole-batch failure that `retry_alone` accepts is
        retried with one call per item."""
        try:
            answers = await self._send(items)
        except Exception as exc:
            if len(items) == 1 or not self._retry_alone(exc):
                raise
            alone = await asyncio.gather(
                *(self._send([item]) for item in items), return_exceptions=True
            )
            return [
                answer if isinstance(answer, BaseException) else _only(answer) for answer in alone
            ]
        if len(answers) != len(items):
            raise RuntimeError(f"{len(answers)} answers for {len(items)} items")
        return answers


def _only(answers: list[Answer | BaseException]) -> Answer | BaseException:
    if len(answers) != 1:
        return RuntimeError(f"{len(answers)} answers for 1 item")
    return answers[0]
