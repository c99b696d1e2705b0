"""Weft: the blocking client, a thin wrapper over AsyncWeft.

Built on the same aiohttp code instead of a second HTTP stack (requests/httpx): one
implementation of retries and errors, no extra dependency. The async client lives on a
private event loop in a daemon thread, so the sync client also works where a loop is
already running (Jupyter, inside async frameworks).
"""

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from weft_client._async import DEFAULT_BASE_URL, AsyncWeft
from weft_client._transport import RetryPolicy

T = TypeVar("T")


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="weft")
        self.thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


class _Proxy:
    """Exposes an async resource's methods as blocking calls."""

    def __init__(self, target: Any, loop: _Loop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._target, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run(method(*args, **kwargs))

        call.__doc__ = method.__doc__
        return call


class Weft:
    """`Weft(api_key, base_url)`: runs, attachments and workflows as blocking calls.

    Same methods and errors as AsyncWeft (`runs.create`, `runs.wait`, ...), minus SSE.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        max_retries: int = 4,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._loop = _Loop()
        self._async = AsyncWeft(
            api_key, base_url, max_retries=max_retries, timeout=timeout, retry=retry
        )
        self.runs: Any = _Proxy(self._async.runs, self._loop)
        self.attachments: Any = _Proxy(self._async.attachments, self._loop)
        self.workflows: Any = _Proxy(self._async.workflows, self._loop)

    def me(self) -> dict[str, Any]:
        return self._loop.run(self._async.me())

    def close(self) -> None:
        """Closes the HTTP session and stops the private loop."""
        if self._loop.loop.is_closed():
            return
        self._loop.run(self._async.close())
        self._loop.stop()

    def __enter__(self) -> "Weft":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
