"""Per-request context carried through asyncio tasks (and across gRPC as metadata)."""

from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_METADATA = "x-request-id"

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
