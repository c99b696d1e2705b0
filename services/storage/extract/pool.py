"""Where extractions wait and run: a bounded pool of their own, a few slots per account.

Each extraction occupies a thread for as long as its sandboxed child works (up to the
extraction timeout), so they get their own threads: on asyncio's default executor six
hostile files used to take every thread and stall everyone's uploads. An account holds
at most `per_account` of the `workers` slots; its other files wait for its own slots,
so they never delay another account's. Waiting is bounded: a file that gets no slot
within `queue_seconds` is stored with extraction `failed`, and its upload still succeeds.
"""

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from services.storage.account_limiter import AccountLimiter
from services.storage.extract import ExtractResult, Limits

# Blocking: extracts `path` as `kind`, the text into `text_path` (Sandbox.run).
Runner = Callable[[Path, str, Limits, Path], ExtractResult]


class ExtractionPool:
    """Runs extractions on `workers` threads, at most `per_account` per account."""

    def __init__(self, run: Runner, workers: int, per_account: int, queue_seconds: float) -> None:
        if not 1 <= per_account <= workers:
            raise ValueError("per_account must be between 1 and workers")
        self._run = run
        self.queue_seconds = queue_seconds
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="extract")
        self._slots = asyncio.Semaphore(workers)
        self._accounts = AccountLimiter(per_account)

    async def extract(
        self, account: str, path: Path, kind: str, limits: Limits, text_path: Path
    ) -> ExtractResult:
        """Extracts `path` once `account` has a slot and the pool a thread; never raises
        for a bad file, and a file that waited too long comes back `failed`."""
        try:
            async with asyncio.timeout(self.queue_seconds):
                await self._take(account)
        except TimeoutError:
            return ExtractResult(
                "failed",
                error=(
                    f"Extraction did not start within {self.queue_seconds:g} seconds: too "
                    "many files were being extracted. Upload the file again later."
                ),
            )
        loop = asyncio.get_running_loop()
        try:
            work = self._executor.submit(self._run, path, kind, limits, text_path)
        except BaseException:
            self._give_back(account)
            raise

        def done(_: Future[ExtractResult]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to free
                loop.call_soon_threadsafe(self._give_back, account)

        # The slots are freed when the thread is, not when a cancelled caller stops
        # waiting: a child still busy with a file still counts against its account.
        work.add_done_callback(done)
        return await asyncio.wrap_future(work)

    async def _take(self, account: str) -> None:
        # The account's slot first: an account at its limit waits without holding one of
        # the pool's slots, which stay free for other accounts.
        await self._accounts.acquire(account)
        try:
            await self._slots.acquire()
        except BaseException:
            self._accounts.release(account)
            raise

    def _give_back(self, account: str) -> None:
        self._slots.release()
        self._accounts.release(account)

    def in_use(self, account: str) -> int:
        """Extractions of `account` running (or being handed to a thread) right now."""
        return self._accounts.in_use(account)

    def close(self) -> None:
        """Drops extractions not started; running ones end with their child's deadline."""
        self._executor.shutdown(wait=False, cancel_futures=True)
