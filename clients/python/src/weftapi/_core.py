"""What the sync and async clients share: configuration, the calls of the API (method,
path, body, how to parse the answer), retry decisions, error mapping and SSE parsing.
The clients only move bytes (`_sync.py` with httpx.Client, `_async.py` with
httpx.AsyncClient), so both behave the same by construction."""

from __future__ import annotations

import email.utils
import json
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Callable, Dict, Generic, List, Mapping, Optional, Tuple, TypeVar, Union
from urllib.parse import quote

import httpx

from weftapi._version import __version__
from weftapi.errors import (
    WeftConnectionError,
    WeftError,
    WeftTimeoutError,
    error_from_response,
    parse_retry_after,
)
from weftapi.models import Attachment, CodeSnippet, Me, Run, RunEvent, Workflow, WorkflowSummary

T = TypeVar("T")

ENV_API_KEY = "WEFT_API_KEY"
ENV_BASE_URL = "WEFT_BASE_URL"
DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 3
MAX_WAIT = 60  # the server's cap on ?wait (long-poll seconds)
MAX_RETRY_AFTER = 60.0  # a longer Retry-After is the caller's to handle (RateLimitError)
SSE_READ_TIMEOUT = 120.0  # the server sends a keep-alive comment every 15 s
USER_AGENT = f"weftapi-python/{__version__}"

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Statuses that say the request did no work: safe to retry even without idempotency.
UNSTARTED_STATUSES = frozenset({429, 503})
# A retry that overtook the request it repeats (same Idempotency-Key, still running):
# once that one ends, the retry gets its answer replayed.
RETRY_CODES = frozenset({"IDEMPOTENCY_IN_FLIGHT"})

FileInput = Union[str, "os.PathLike[str]", bytes, IO[bytes]]


@dataclass(frozen=True)
class Settings:
    """A client's connection settings; `with_options` makes a changed copy."""

    api_key: str
    base_url: str
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    backoff: float = 0.5  # first retry waits up to this long, doubling each time
    max_backoff: float = 20.0

    @classmethod
    def resolve(
        cls,
        api_key: Optional[str],
        base_url: Optional[str],
        timeout: Optional[float],
        max_retries: Optional[int],
    ) -> Settings:
        """Arguments first, then WEFT_API_KEY / WEFT_BASE_URL, then defaults."""
        key = api_key or os.environ.get(ENV_API_KEY)
        if not key:
            raise WeftError(f"no API key: pass api_key=... or set {ENV_API_KEY}")
        url = base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
        return cls(
            api_key=key,
            base_url=url.rstrip("/"),
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
        )

    def changed(self, timeout: Optional[float], max_retries: Optional[int]) -> Settings:
        return replace(
            self,
            timeout=self.timeout if timeout is None else timeout,
            max_retries=self.max_retries if max_retries is None else max_retries,
        )

    def headers(self) -> Dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }

    def delay(self, attempt: int, response: Optional[httpx.Response] = None) -> Optional[float]:
        """Seconds before retry number `attempt` (0-based): the server's Retry-After when
        it sent one, else exponential backoff with full jitter. None: do not retry (the
        server asks for a longer wait than a call should block, e.g. an hourly limit)."""
        if response is not None:
            after = retry_after(response)
            if after is not None:
                return after if after <= MAX_RETRY_AFTER else None
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))


def retry_after(response: httpx.Response) -> Optional[float]:
    """Retry-After as delta-seconds or an HTTP date, in seconds from now."""
    value = response.headers.get("retry-after")
    seconds = parse_retry_after(value)
    if seconds is not None or value is None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class Upload:
    """A file part, reopened (or rewound) for every attempt so retries resend it whole."""

    source: FileInput
    filename: Optional[str] = None
    form_field: str = "file"
    _start: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if isinstance(self.source, (str, os.PathLike)):
            path = Path(self.source)
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            self.filename = self.filename or path.name
        elif not isinstance(self.source, bytes):
            self._start = self.source.tell()
            self.filename = self.filename or Path(getattr(self.source, "name", "upload")).name

    def open(self) -> Tuple[Dict[str, Any], Callable[[], None]]:
        """`files=` for httpx, and what closes it after the attempt."""
        if isinstance(self.source, (str, os.PathLike)):
            handle: Any = open(self.source, "rb")
            return {self.form_field: (self.filename, handle)}, handle.close
        if isinstance(self.source, bytes):
            return {self.form_field: (self.filename or "upload", self.source)}, lambda: None
        self.source.seek(self._start)
        return {self.form_field: (self.filename, self.source)}, lambda: None


@dataclass
class Call(Generic[T]):
    """One API operation: the request to send and how to read its `data`."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Optional[Dict[str, str]] = None
    json: Any = None
    upload: Optional[Upload] = None
    headers: Dict[str, str] = field(default_factory=dict)
    timeout: Optional[float] = None  # over the client's (a long-poll needs longer)

    @property
    def idempotent(self) -> bool:
        """Safe to resend after a lost answer: a GET, or a POST with an Idempotency-Key."""
        return self.method == "GET" or "Idempotency-Key" in self.headers

    def request(
        self, http: Union[httpx.Client, httpx.AsyncClient], s: Settings
    ) -> Tuple[httpx.Request, Callable[[], None]]:
        """The httpx.Request, and what to call after the attempt (closes an upload)."""
        files, close = self.upload.open() if self.upload else (None, lambda: None)
        timeout = max(s.timeout, self.timeout or 0)
        req = http.build_request(
            self.method,
            s.base_url + self.path,
            params=self.params,
            json=self.json,
            files=files,
            headers={**s.headers(), **self.headers},
            timeout=timeout,
        )
        return req, close


def should_retry(call: Call[Any], response: httpx.Response) -> bool:
    """An error answer worth another attempt."""
    if response.status_code in UNSTARTED_STATUSES:
        return True
    if not call.idempotent:
        return False
    if response.status_code in RETRY_STATUSES:
        return True
    if response.status_code == 409:
        try:
            code = response.json().get("error", {}).get("code")
        except (ValueError, AttributeError):
            return False
        return code in RETRY_CODES
    return False


def retry_transport_error(call: Call[Any], exc: httpx.TransportError) -> bool:
    """Nothing reached the server (connect failed): always safe. Lost mid-way: only if
    the call is idempotent."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return True
    return call.idempotent


def transport_error(exc: httpx.TransportError, url: str, timeout: float) -> WeftError:
    """A readable error for a failed connection or a timed-out answer."""
    if isinstance(exc, httpx.ConnectTimeout):
        return WeftConnectionError(url, f"connection timed out after {timeout:g}s")
    if isinstance(exc, httpx.TimeoutException):
        return WeftTimeoutError(f"no answer from {url} within {timeout:g}s")
    return WeftConnectionError(url, _reason(exc))


def _reason(exc: BaseException) -> str:
    """The root cause in a few words (httpx wraps the OS error, asyncio words it vaguely)."""
    seen: List[BaseException] = []
    cause: Optional[BaseException] = exc
    while cause is not None and cause not in seen:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    for err in reversed(seen):
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        if isinstance(err, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(err, socket.gaierror):
            return "host name not found"
    text = " ".join(str(e) for e in seen).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "host name not found"
    return str(exc) or type(exc).__name__


def read(call: Call[T], response: httpx.Response) -> T:
    """The parsed `data` of a success, or the typed error of a failure."""
    if response.status_code >= 400:
        raise error_from_response(response)
    try:
        body = response.json()
    except ValueError as exc:
        raise WeftError(
            f"{call.method} {call.path}: answer is not JSON (status {response.status_code})"
        ) from exc
    return call.parse(body)


class APIResponse(Generic[T]):
    """A response with its headers, from `client.with_raw_response.<resource>.<method>()`:
    `.parse()` gives what the plain call answers."""

    def __init__(self, http_response: httpx.Response, parsed: T) -> None:
        self.http_response = http_response
        self._parsed = parsed

    def parse(self) -> T:
        return self._parsed

    @property
    def headers(self) -> httpx.Headers:
        return self.http_response.headers

    @property
    def status_code(self) -> int:
        return self.http_response.status_code

    @property
    def request_id(self) -> Optional[str]:
        return self.headers.get("x-request-id")

    @property
    def idempotent_replayed(self) -> bool:
        """True when the server replayed a previous answer for this Idempotency-Key."""
        return self.headers.get("idempotent-replayed") == "true"

    @property
    def rate_limit_remaining(self) -> Optional[int]:
        value = self.headers.get("ratelimit-remaining")
        return int(value) if value is not None and value.isdigit() else None


# -- the operations ---------------------------------------------------------------------


def _data(model: Callable[..., T]) -> Callable[[Any], T]:
    return lambda body: model(**body["data"])


def _page(model: Callable[..., T]) -> Callable[[Any], Tuple[List[T], bool]]:
    return lambda body: ([model(**d) for d in body["data"]], bool(body.get("has_more")))


def _id(value: str) -> str:
    """An id as one path segment (an id with `/` or `?` cannot reach another route)."""
    return quote(str(value), safe="")


def _query(**values: Any) -> Dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


def idempotency(key: Optional[str]) -> Dict[str, str]:
    """One key per logical call, reused by every retry of it."""
    return {"Idempotency-Key": key or str(uuid.uuid4())}


def me() -> Call[Me]:
    return Call("GET", "/api/v1/me", _data(Me))


def create_run(
    workflow_id: str,
    input_text: str,
    params: Optional[Mapping[str, Any]],
    attachment_ids: Optional[List[str]],
    webhook_url: Optional[str],
    idempotency_key: Optional[str],
    extra: Optional[Mapping[str, Any]],
    *,
    timeout_seconds: Optional[int] = None,
    priority: Optional[int] = None,
) -> Call[Run]:
    body: Dict[str, Any] = {"input_text": input_text}
    if timeout_seconds is not None:
        body["timeout_seconds"] = timeout_seconds
    if priority is not None:
        body["priority"] = priority
    if params is not None:
        body["params"] = dict(params)
    if attachment_ids:
        body["attachment_ids"] = list(attachment_ids)
    if webhook_url:
        body["webhook_url"] = webhook_url
    body.update(extra or {})
    return Call(
        "POST",
        f"/api/v1/workflows/{_id(workflow_id)}/runs",
        _data(Run),
        json=body,
        headers=idempotency(idempotency_key),
    )


def call_endpoint(
    slug: str, fields: Mapping[str, Any], idempotency_key: Optional[str]
) -> Call[Run]:
    return Call(
        "POST",
        f"/api/v1/endpoints/{_id(slug)}",
        _data(Run),
        json=dict(fields),
        headers=idempotency(idempotency_key),
    )


def get_run(run_id: str, wait: int = 0) -> Call[Run]:
    wait = min(max(int(wait), 0), MAX_WAIT)
    return Call(
        "GET",
        f"/api/v1/workflow-runs/{_id(run_id)}",
        _data(Run),
        params=_query(wait=wait) if wait else None,
        timeout=wait + 30.0 if wait else None,
    )


def list_runs(
    workflow_id: Optional[str], status: Optional[str], limit: Optional[int], after: Optional[str]
) -> Call[Tuple[List[Run], bool]]:
    params = _query(workflow_id=workflow_id, status=status, limit=limit, starting_after=after)
    return Call("GET", "/api/v1/workflow-runs", _page(Run), params=params)


def cancel_run(run_id: str) -> Call[Run]:
    return Call("POST", f"/api/v1/workflow-runs/{_id(run_id)}/cancel", _data(Run), json={})


def submit_input(run_id: str, values: Mapping[str, Any]) -> Call[Run]:
    return Call(
        "POST",
        f"/api/v1/workflow-runs/{_id(run_id)}/input",
        _data(Run),
        json={"values": dict(values)},
    )


def list_workflows(
    limit: Optional[int], after: Optional[str]
) -> Call[Tuple[List[WorkflowSummary], bool]]:
    params = _query(limit=limit, starting_after=after)
    return Call("GET", "/api/v1/workflows", _page(WorkflowSummary), params=params)


def get_workflow(workflow_id: str) -> Call[Workflow]:
    return Call("GET", f"/api/v1/workflows/{_id(workflow_id)}", _data(Workflow))


def workflow_code(
    workflow_id: str, language: Optional[str], variant: Optional[str], auth: Optional[str] = None
) -> Call[List[CodeSnippet]]:
    return Call(
        "GET",
        f"/api/v1/workflows/{_id(workflow_id)}/code",
        lambda body: [CodeSnippet(**d) for d in body["data"]],
        params=_query(language=language, variant=variant, auth=auth),
    )


def upload_attachment(
    file: FileInput, filename: Optional[str], idempotency_key: Optional[str]
) -> Call[Attachment]:
    return Call(
        "POST",
        "/api/v1/attachments",
        _data(Attachment),
        upload=Upload(file, filename),
        headers=idempotency(idempotency_key),
        timeout=600.0,
    )


def get_attachment(attachment_id: str) -> Call[Attachment]:
    return Call("GET", f"/api/v1/attachments/{_id(attachment_id)}", _data(Attachment))


# -- Server-Sent Events -----------------------------------------------------------------


def events_request(run_id: str, last_event_id: Optional[str], s: Settings) -> Dict[str, Any]:
    """Keyword arguments for `httpx_sse.connect_sse` / `aconnect_sse`."""
    headers = {**s.headers(), "Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    return {
        "method": "GET",
        "url": f"{s.base_url}/api/v1/workflow-runs/{_id(run_id)}/events",
        "headers": headers,
        "timeout": httpx.Timeout(s.timeout, read=max(SSE_READ_TIMEOUT, s.timeout)),
    }


def parse_event(name: str, data: str, seq: Optional[str]) -> RunEvent:
    """One SSE message as a RunEvent. The payload is {id, type, created_at, stage, data};
    token events (`stage.delta`) carry their text in `delta` (or `data.delta|text`)."""
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        payload = {"delta": data}
    if not isinstance(payload, dict):
        payload = {"delta": str(payload)}
    inner = payload.get("data")
    delta = payload.get("delta")
    if delta is None and isinstance(inner, dict):
        text = inner.get("delta", inner.get("text"))
        delta = text if isinstance(text, str) else None
    run = inner if isinstance(inner, dict) and "status" in inner and "id" in inner else None
    fields = {k: v for k, v in payload.items() if k not in ("data", "delta", "type", "seq")}
    return RunEvent(
        **fields,
        type=payload.get("type") or name or "message",
        data=Run.model_validate(run) if run is not None else None,
        seq=seq or None,
        delta=delta if isinstance(delta, str) else None,
    )


def event_stream_error(response: httpx.Response) -> Optional[WeftError]:
    """The error of an event stream that was refused (its body already read)."""
    if response.status_code >= 400:
        return error_from_response(response)
    if "text/event-stream" not in response.headers.get("content-type", ""):
        return WeftError(f"expected an event stream, got {response.headers.get('content-type')}")
    return None
