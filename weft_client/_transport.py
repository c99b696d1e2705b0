"""HTTP with retries: exponential backoff with full jitter on 429 (honouring Retry-After),
5xx and connection errors. A creating POST keeps ONE Idempotency-Key across all its
attempts, so a retry after a lost answer replays the first run instead of starting two."""

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from weft_client.errors import WeftConnectionError, error_from_response, parse_retry_after

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A retry that overtook the request it repeats (same Idempotency-Key, still running):
# once that one ends, the retry gets its answer replayed.
RETRY_CODES = frozenset({"IDEMPOTENCY_IN_FLIGHT"})
USER_AGENT = "weft-python/0.1"


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number `attempt` (0-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay * 3)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


BodyFactory = Callable[[], Any]  # a fresh body per attempt (a FormData is single-use)


class Transport:
    """One aiohttp session to one Weft base URL with the API key."""

    def __init__(
        self,
        api_key: str,
        base_url: str,
        retry: RetryPolicy,
        timeout: float,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}
        self._session: aiohttp.ClientSession | None = None
        self._sleep = sleep

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: BodyFactory | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        retry: bool = True,
    ) -> Answer:
        """The 2xx answer; raises the typed error (after retries) otherwise."""
        attempt = 0
        while True:
            try:
                answer = await self._once(method, path, json, body, params, headers, timeout)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if not retry or attempt >= self.retry.max_retries:
                    raise WeftConnectionError(f"{method} {path}: {exc!r}") from exc
                await self._sleep(self.retry.delay(attempt, None))
                attempt += 1
                continue
            if answer.status < 400:
                return answer
            if retry and _retryable(answer) and attempt < self.retry.max_retries:
                wait = parse_retry_after(answer.headers.get("Retry-After"))
                await self._sleep(self.retry.delay(attempt, wait))
                attempt += 1
                continue
            raise error_from_response(answer.status, answer.body, answer.headers)

    async def _once(
        self,
        method: str,
        path: str,
        json: Any,
        body: BodyFactory | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> Answer:
        url = path if path.startswith("http") else f"{self.base_url}{path}"
        async with self._http().request(
            method,
            url,
            json=json,
            data=body() if body is not None else None,
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout or self._timeout),
        ) as response:
            raw = await response.read()
            try:
                parsed: Any = await response.json(content_type=None) if raw else None
            except ValueError:
                parsed = {"raw": raw.decode("utf-8", "replace")}
            return Answer(response.status, dict(response.headers), parsed)

    def stream(self, path: str, headers: Mapping[str, str] | None = None) -> Any:
        """A raw streaming GET (the caller reads and closes it): SSE."""
        return self._http().get(
            f"{self.base_url}{path}",
            headers={"Accept": "text/event-stream", **(headers or {})},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
        )


def _retryable(answer: Answer) -> bool:
    if answer.status in RETRY_STATUSES:
        return True
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    return isinstance(error, dict) and error.get("code") in RETRY_CODES
