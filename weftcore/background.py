"""The background loops a process owns: started by name, restarted after a crash,
cancelled and awaited on close.

Every long-running loop (outbox relay, notifier, webhook deliveries, billing capture and
expiry, auth's last-used flusher, the worker's consumer and recovery, the readiness
watcher) runs under a `BackgroundTasks`, so none is left to the garbage collector and
none dies unnoticed.

A crash (an exception escaping the loop) is logged at ERROR with its traceback, and the
loop is started again after a delay that doubles up to `max_delay` (back to the first
delay once a run lasted longer than that). Restarting rather than stopping the process
is deliberate: the loops already retry the failures they expect (NATS or Postgres
away), so what escapes is a surprise, and a process that keeps serving with the loop
restarted loses less than one that stops publishing runs or capturing credits until
someone notices. A loop that returns has finished its job and is not restarted.
"""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

Loop = Callable[[], Coroutine[Any, Any, None]]


class BackgroundTasks:
    """Named tasks owned together; `close()` on shutdown (idempotent)."""

    def __init__(self, *, first_delay: float = 0.5, max_delay: float = 30.0) -> None:
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    def start(self, name: str, loop: Loop) -> None:
        """Run `loop()` as task `name` until it returns or `close()` cancels it."""
        if self._closed:
            raise RuntimeError(f"cannot start {name!r}: these background tasks are closed")
        running = self._tasks.get(name)
        if running is not None and not running.done():
            raise ValueError(f"a background task named {name!r} is already running")
        self._tasks[name] = asyncio.create_task(self._supervise(name, loop), name=name)

    def running(self) -> list[str]:
        """Names of the tasks not finished yet."""
        return [name for name, task in self._tasks.items() if not task.done()]

    async def close(self) -> None:
        """Cancel every task and wait until all have finished (their `finally` blocks
        included); nothing can be started afterwards."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, name: str, loop: Loop) -> None:
        clock = asyncio.get_running_loop().time
        delay = self._first_delay
        while True:
            started = clock()
            try:
                await loop()
                return
            except Exception:
                if clock() - started > self._max_delay:
                    delay = self._first_delay  # it had been running fine: a new failure
                log.exception(
                    "background task crashed; restarting it",
                    extra={"task": name, "restart_in_seconds": delay},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_delay)
