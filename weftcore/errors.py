"""The one domain error hierarchy, and its mapping to and from gRPC status.

Services raise `WeftError`s; the gRPC interceptor turns them into a status carrying a
`google.rpc.ErrorInfo` whose `reason` is the public error code. The gateway turns that
status back into a `WeftError` and from there into the HTTP envelope.
"""

from typing import Any, ClassVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "weft"
_DETAILS_KEY = "grpc-status-details-bin"
# A client-streaming call refused while the client is still sending also carries its
# status (status_bytes) in initial metadata, sent at once: the final status can be lost
# to a write in flight when the call ends (grpc/grpc#36066 reports INTERNAL instead).
EARLY_STATUS_METADATA = "weft-early-status-bin"


class WeftError(Exception):
    """An error with a stable public code. Subclasses fix the gRPC status."""

    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    default_code: ClassVar[str] = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.extra = dict(extra or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}: {self.message})"


class InvalidArgument(WeftError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    default_code = "INVALID_PARAM"


class FailedPrecondition(WeftError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    default_code = "FAILED_PRECONDITION"


class NotFound(WeftError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    default_code = "NOT_FOUND"


class Conflict(WeftError):
    grpc_code = grpc.StatusCode.ABORTED
    default_code = "CONFLICT"


class Unauthenticated(WeftError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    default_code = "UNAUTHENTICATED"


class PermissionDenied(WeftError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    default_code = "MISSING_SCOPE"


class ResourceExhausted(WeftError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_code = "RATE_LIMITED"


class Unavailable(WeftError):
    grpc_code = grpc.StatusCode.UNAVAILABLE
    default_code = "SERVICE_UNAVAILABLE"


class DeadlineExceeded(WeftError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_code = "DEADLINE_EXCEEDED"


class Internal(WeftError):
    grpc_code = grpc.StatusCode.INTERNAL
    default_code = "INTERNAL"


_BY_GRPC_CODE: dict[grpc.StatusCode, type[WeftError]] = {
    cls.grpc_code: cls
    for cls in (
        InvalidArgument,
        FailedPrecondition,
        NotFound,
        Conflict,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Internal,
    )
}
_BY_GRPC_CODE[grpc.StatusCode.ALREADY_EXISTS] = Conflict
_GRPC_CODE_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


def _status_proto(err: WeftError) -> status_pb2.Status:
    metadata = {k: str(v) for k, v in err.extra.items()}
    if err.param is not None:
        metadata["param"] = err.param
    info = error_details_pb2.ErrorInfo(reason=err.code, domain=ERROR_DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(
        code=getattr(code_pb2, err.grpc_code.name), message=err.message, details=[detail]
    )


def to_status(err: WeftError) -> grpc.Status:
    """The rich gRPC status for a domain error (reason = public code, param/extra as metadata)."""
    return rpc_status.to_status(_status_proto(err))


def status_bytes(err: WeftError) -> bytes:
    """The same status, serialized: one item's error inside a batch call's answer."""
    return bytes(_status_proto(err).SerializeToString())


def from_status_bytes(raw: bytes) -> WeftError:
    """The domain error of `status_bytes`."""
    status = status_pb2.Status.FromString(raw)
    code = _GRPC_CODE_BY_VALUE.get(status.code, grpc.StatusCode.UNKNOWN)
    return _from_status(status, code, status.message) or Internal("Internal error.")


def _from_status(
    status: status_pb2.Status, code: grpc.StatusCode, message: str
) -> WeftError | None:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            extra = dict(info.metadata)
            param = extra.pop("param", None)
            cls = _BY_GRPC_CODE.get(code, Internal)
            return cls(status.message or message, code=info.reason, param=param, extra=extra)
    return None


def from_rpc_error(exc: grpc.RpcError) -> WeftError:
    """Rebuild the domain error a service raised from the status it sent."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    message = (exc.details() if hasattr(exc, "details") else None) or ""
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailing or ():
        if key != _DETAILS_KEY:
            continue
        err = _from_status(status_pb2.Status.FromString(value), code, message)
        if err is not None:
            return err
    # No ErrorInfo: a transport-level failure (server down, deadline), not a domain error.
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable("A dependency is unavailable. Retry with backoff.")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded("A dependency did not answer in time. Retry with backoff.")
    return Internal("Internal error.")
