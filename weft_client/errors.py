"""Typed errors: one class per HTTP status of the error envelope (spec/API.md)."""

from typing import Any


class WeftError(Exception):
    """Base of every error this client raises."""


class WeftConnectionError(WeftError):
    """The server could not be reached (after retries)."""


class WeftTimeoutError(WeftError):
    """A run did not reach a terminal status within the wait timeout."""


class WeftAPIError(WeftError):
    """An error answer: `code`, `message`, `request_id`, `param` from the envelope."""

    status: int = 0

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None = None,
        param: str | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message} (request_id={request_id})")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.param = param
        self.body = body or {}
        self.headers = headers or {}


class BadRequestError(WeftAPIError):
    """400: INVALID_JSON, INVALID_PARAM, MISSING_PARAM..."""


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
    """409: IDEMPOTENCY_KEY_REUSED, IDEMPOTENCY_IN_FLIGHT, RUN_NOT_AWAITING_INPUT..."""


class PayloadTooLargeError(WeftAPIError):
    """413 PAYLOAD_TOO_LARGE."""


class UnsupportedMediaTypeError(WeftAPIError):
    """415 UNSUPPORTED_MEDIA_TYPE."""


class RateLimitError(WeftAPIError):
    """429 RATE_LIMITED; `retry_after` seconds from the Retry-After header."""

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("Retry-After"))


class InternalServerError(WeftAPIError):
    """500 INTERNAL (and any other 5xx)."""


class ServiceUnavailableError(WeftAPIError):
    """503 SERVICE_UNAVAILABLE."""


_BY_STATUS: dict[int, type[WeftAPIError]] = {
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


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the API sends delta-seconds), or None."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(status: int, body: Any, headers: dict[str, str]) -> WeftAPIError:
    """The typed error for an error answer (tolerates a body that is not the envelope)."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        err = {}
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else WeftAPIError)
    return cls(
        status,
        str(err.get("code") or f"HTTP_{status}"),
        str(err.get("message") or "Unexpected answer."),
        request_id=err.get("request_id") or headers.get("X-Request-Id"),
        param=err.get("param"),
        body=body if isinstance(body, dict) else None,
        headers=headers,
    )
