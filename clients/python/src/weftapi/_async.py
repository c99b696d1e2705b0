"""`AsyncWeft`: the asyncio client (httpx.AsyncClient), method for method the twin of
`Weft` in `_sync.py`; calls, retry rules and parsing come from `_core`."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Generic,
    List,
    Mapping,
    Optional,
    TypeVar,
    cast,
)

import httpx
from httpx_sse import aconnect_sse

from weftapi import _core
from weftapi._core import APIResponse, Call, FileInput, Settings
from weftapi._sync import request_timeout
from weftapi.errors import RunTimeoutError
from weftapi.models import Attachment, CodeSnippet, Me, Run, RunEvent, Workflow, WorkflowSummary

T = TypeVar("T")


class AsyncPage(Generic[T]):
    """One page of a list (`data`, `has_more`). `async for` over it yields every item of
    every page, fetching the next pages as needed."""

    def __init__(
        self, data: List[T], has_more: bool, fetch: Callable[[str], Awaitable[AsyncPage[T]]]
    ) -> None:
        self.data = data
        self.has_more = has_more
        self._fetch = fetch

    async def next_page(self) -> Optional[AsyncPage[T]]:
        if not self.has_more or not self.data:
            return None
        return await self._fetch(cast(Any, self.data[-1]).id)

    async def iter_pages(self) -> AsyncIterator[AsyncPage[T]]:
        page: Optional[AsyncPage[T]] = self
        while page is not None:
            yield page
            page = await page.next_page()

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.iter_pages():
            for item in page.data:
                yield item


class AsyncPager(Generic[T]):
    """What `list()` answers: `await` it for the first page, or `async for` over it for
    every item."""

    def __init__(self, first: Callable[[], Awaitable[AsyncPage[T]]]) -> None:
        self._first = first

    def __await__(self) -> Generator[Any, None, AsyncPage[T]]:
        return self._first().__await__()

    async def __aiter__(self) -> AsyncIterator[T]:
        page = await self._first()
        async for item in page:
            yield item


class _Resource:
    def __init__(self, client: AsyncWeft) -> None:
        self._client = client


class AsyncRuns(_Resource):
    async def create(
        self,
        workflow_id: str,
        input_text: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        attachment_ids: Optional[List[str]] = None,
        webhook_url: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        timeout_seconds: Optional[int] = None,
        priority: Optional[int] = None,
        extra_body: Optional[Mapping[str, Any]] = None,
    ) -> Run:
        """Starts a run (answers at once, status `pending`). One Idempotency-Key (yours,
        or a fresh UUID) covers every retry, so a retry never starts a second run.
        `timeout_seconds`: the run fails with TIMEOUT past it (default: the workflow's).
        `priority` (0-9, default 5): its turn among runs waiting for a concurrency slot."""
        return await self._client._dispatch(
            _core.create_run(
                workflow_id,
                input_text,
                params,
                attachment_ids,
                webhook_url,
                idempotency_key,
                extra_body,
                timeout_seconds=timeout_seconds,
                priority=priority,
            )
        )

    async def get(self, run_id: str, *, wait: int = 0) -> Run:
        """The run; `wait` (0-60 s) long-polls until its status changes."""
        return await self._client._dispatch(_core.get_run(run_id, wait))

    async def wait(self, run_id: str, *, timeout: float = 600.0, poll: int = 30) -> Run:
        """Long-polls until the run is terminal. After `timeout` seconds: RunTimeoutError
        (the run itself goes on; its last snapshot is on the error)."""
        deadline = time.monotonic() + timeout
        run = await self._client._send(_core.get_run(run_id))
        while not run.done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunTimeoutError(run, timeout)
            wait = max(1, min(poll, int(left) or 1))
            run = await self._client._send(_core.get_run(run_id, wait))
        return run

    def list(
        self,
        *,
        workflow_id: Optional[str] = None,
        status: Optional[str] = None,
        limit: Optional[int] = None,
        starting_after: Optional[str] = None,
    ) -> AsyncPager[Run]:
        """Your runs, newest first: `await` for a page, `async for` for every run."""

        async def fetch(after: Optional[str]) -> AsyncPage[Run]:
            call = _core.list_runs(workflow_id, status, limit, after)
            data, more = await self._client._send(call)
            return AsyncPage(data, more, fetch)

        return AsyncPager(lambda: fetch(starting_after))

    async def cancel(self, run_id: str) -> Run:
        """Cancels a pending, running or waiting run (409 when it has ended)."""
        return await self._client._dispatch(_core.cancel_run(run_id))

    async def submit_input(self, run_id: str, values: Mapping[str, Any]) -> Run:
        """Answers a run in `awaiting_input` with the fields of its request."""
        return await self._client._dispatch(_core.submit_input(run_id, values))

    async def events(
        self, run_id: str, *, last_event_id: Optional[str] = None
    ) -> AsyncIterator[RunEvent]:
        """The run's events as they happen (Server-Sent Events), until the terminal one.
        A dropped stream is resumed where it stopped (Last-Event-ID)."""
        client = self._client
        s = client._settings
        last, failures = last_event_id, 0
        while True:
            try:
                async with aconnect_sse(
                    client._http, **_core.events_request(run_id, last, s)
                ) as source:
                    response = source.response
                    if not response.is_success:
                        await response.aread()
                    error = _core.event_stream_error(response)
                    if error is not None:
                        wait = s.delay(failures, response)
                        if failures < s.max_retries and response.status_code in (429, 503):
                            if wait is not None:
                                await client._sleep(wait)
                                failures += 1
                                continue
                        raise error
                    async for sse in source.aiter_sse():
                        event = _core.parse_event(sse.event, sse.data, sse.id)
                        last = sse.id or last
                        failures = 0
                        yield event
                        if event.terminal:
                            return
            except httpx.TransportError as exc:
                if failures >= s.max_retries:
                    raise _core.transport_error(exc, s.base_url, s.timeout) from exc
            # The stream broke or ended before the terminal event: resume after `last`.
            if failures >= s.max_retries:
                return
            await client._sleep(s.delay(failures) or 0.0)
            failures += 1


class AsyncWorkflows(_Resource):
    def list(
        self, *, limit: Optional[int] = None, starting_after: Optional[str] = None
    ) -> AsyncPager[WorkflowSummary]:
        """The workflows your key may run: `await` for a page, `async for` for all."""

        async def fetch(after: Optional[str]) -> AsyncPage[WorkflowSummary]:
            data, more = await self._client._send(_core.list_workflows(limit, after))
            return AsyncPage(data, more, fetch)

        return AsyncPager(lambda: fetch(starting_after))

    async def get(self, workflow_id: str) -> Workflow:
        """The workflow with its fields, stages and endpoint URL."""
        return await self._client._dispatch(_core.get_workflow(workflow_id))

    async def code(
        self,
        workflow_id: str,
        *,
        language: Optional[str] = None,
        variant: Optional[str] = None,
        auth: Optional[str] = None,
    ) -> List[CodeSnippet]:
        """Ready-to-run client code for the workflow (curl, node, python, php, go);
        `auth` "key" or "none" (a public endpoint's keyless call; its default)."""
        return await self._client._dispatch(
            _core.workflow_code(workflow_id, language, variant, auth)
        )


class AsyncAttachments(_Resource):
    async def upload(
        self,
        file: FileInput,
        *,
        filename: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> Attachment:
        """Uploads a file (a path, bytes or a binary file object); a retry resends it
        whole under the same Idempotency-Key."""
        call = _core.upload_attachment(file, filename, idempotency_key)
        return await self._client._dispatch(call)

    async def get(self, attachment_id: str) -> Attachment:
        return await self._client._dispatch(_core.get_attachment(attachment_id))


class AsyncEndpoints(_Resource):
    async def call(
        self, slug: str, fields: Mapping[str, Any], *, idempotency_key: Optional[str] = None
    ) -> Run:
        """Calls a workflow's published endpoint with flat fields (`input_text` too)."""
        return await self._client._dispatch(_core.call_endpoint(slug, fields, idempotency_key))


class AsyncWeft:
    """The Weft API, asyncio. `AsyncWeft()` reads WEFT_API_KEY and WEFT_BASE_URL.

    async with AsyncWeft() as weft:
        run = await weft.runs.create("wf_...", "Summarise this")
        async for event in weft.runs.events(run.id):
            print(event.type, event.stage)
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        *,
        timeout: Optional[float] = None,
        max_retries: Optional[int] = None,
        http_client: Optional[httpx.AsyncClient] = None,
    ) -> None:
        self._settings = Settings.resolve(api_key, base_url, timeout, max_retries)
        self._http = http_client or httpx.AsyncClient()
        self._owns_http = http_client is None
        self._raw = False
        self._sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
        self._bind()

    def _bind(self) -> None:
        self.runs = AsyncRuns(self)
        self.workflows = AsyncWorkflows(self)
        self.attachments = AsyncAttachments(self)
        self.endpoints = AsyncEndpoints(self)

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    def with_options(
        self, *, timeout: Optional[float] = None, max_retries: Optional[int] = None
    ) -> AsyncWeft:
        """A client for some calls with another timeout or number of retries, sharing
        this client's connections: `await weft.with_options(timeout=5).me()`."""
        other = copy.copy(self)
        other._settings = self._settings.changed(timeout, max_retries)
        other._owns_http = False
        other._bind()
        return other

    @property
    def with_raw_response(self) -> Any:
        """The same resources, answering `APIResponse` (headers, status, `.parse()`)."""
        other = self.with_options()
        other._raw = True
        return other

    async def me(self) -> Me:
        """The account and key behind the token."""
        return await self._dispatch(_core.me())

    async def close(self) -> None:
        """Closes the connections (when this client opened them)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncWeft:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- transport ---------------------------------------------------------------------

    async def _request(self, call: Call[Any]) -> httpx.Response:
        s = self._settings
        attempt = 0
        while True:
            request, done = call.request(self._http, s)
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                wait = s.delay(attempt)
                if (
                    attempt < s.max_retries
                    and _core.retry_transport_error(call, exc)
                    and wait is not None
                ):
                    await self._sleep(wait)
                    attempt += 1
                    continue
                raise _core.transport_error(exc, s.base_url, request_timeout(request)) from exc
            finally:
                done()
            if attempt < s.max_retries and _core.should_retry(call, response):
                wait = s.delay(attempt, response)
                if wait is not None:
                    await self._sleep(wait)
                    attempt += 1
                    continue
            return response

    async def _send(self, call: Call[T]) -> T:
        return _core.read(call, await self._request(call))

    async def _dispatch(self, call: Call[T]) -> T:
        response = await self._request(call)
        parsed = _core.read(call, response)
        return cast(T, APIResponse(response, parsed)) if self._raw else parsed
