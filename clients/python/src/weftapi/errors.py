"""Errors: one base (`WeftError`), one class per HTTP status of the API's error envelope."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import httpx


class WeftError(Exception):
    """Base of every error this SDK raises."""


class WeftConnectionError(WeftError):
    """The server could not be reached (after the retries)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class WeftTimeoutError(WeftError):
    """A request, or a wait for a run, took longer than its timeout."""


class RunTimeoutError(WeftTimeoutError):
    """`runs.wait` gave up while the run still goes on; `run` is its last snapshot."""

    def __init__(self, run: Any, timeout: float) -> None:
        super().__init__(f"run {run.id} still {run.status} after {timeout:g}s (it continues)")
        self.run = run


class WebhookVerificationError(WeftError):
    """A webhook's `Weft-Signature` is missing, malformed, wrong or too old."""


class WeftAPIError(WeftError):
    """An error answer: `status`, and `code`, `message`, `param`, `request_id` from the
    envelope; `body` the whole envelope, `headers` the response headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        request_id: Optional[str] = None,
        param: Optional[str] = None,
        body: Optional[Dict[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        where = f" (param: {param})" if param else ""
        rid = f" [request_id: {request_id}]" if request_id else ""
        super().__init__(f"{status} {code}: {message}{where}{rid}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.param = param
        self.body: Dict[str, Any] = body or {}
        self.headers = httpx.Headers(dict(headers or {}))


class BadRequestError(WeftAPIError):
    """400: INVALID_JSON, INVALID_PARAM, MISSING_PARAM."""


class AuthenticationError(WeftAPIError):
    """401 UNAUTHENTICATED."""


class PaymentRequiredError(WeftAPIError):
    """402 PAID_PLAN_REQUIRED or INSUFFICIENT_CREDITS."""


class PermissionDeniedError(WeftAPIError):
    """403 MISSING_SCOPE or NO_ALLOCATION."""


class NotFoundError(WeftAPIError):
    """404 NOT_FOUND."""


class MethodNotAllowedError(WeftAPIError):
    """405 METHOD_NOT_ALLOWED."""


class ConflictError(WeftAPIError):
    """409: IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_IN_FLIGHT, RUN_NOT_AWAITING_INPUT, ..."""


class PayloadTooLargeError(WeftAPIError):
    """413 PAYLOAD_TOO_LARGE."""


class UnsupportedMediaTypeError(WeftAPIError):
    """415 UNSUPPORTED_MEDIA_TYPE."""


class RateLimitError(WeftAPIError):
    """429 RATE_LIMITED; `retry_after` in seconds from the Retry-After header."""

    @property
    def retry_after(self) -> Optional[float]:
        return parse_retry_after(self.headers.get("retry-after"))


class InternalServerError(WeftAPIError):
    """500 INTERNAL (and any other 5xx but 503)."""


class ServiceUnavailableError(WeftAPIError):
    """503 SERVICE_UNAVAILABLE."""


_BY_STATUS: Dict[int, type] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: ConflictError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    429: RateLimitError,
    500: InternalServerError,
    503: ServiceUnavailableError,
}


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Retry-After in seconds (the API sends delta-seconds), or None."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> WeftAPIError:
    """The typed error for an error answer; tolerates a body that is not the envelope
    (a proxy's HTML page, an empty body)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        text = response.text.strip()[:200] if response.content else ""
        err = {"message": text or response.reason_phrase or "Unexpected answer."}
    status = response.status_code
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else WeftAPIError)
    error: WeftAPIError = cls(
        status,
        str(err.get("code") or f"HTTP_{status}"),
        str(err.get("message") or "Unexpected answer."),
        request_id=err.get("request_id") or response.headers.get("x-request-id"),
        param=err.get("param"),
        body=body if isinstance(body, dict) else None,
        headers=response.headers,
    )
    return error
