"""JSON responses, the error envelope and body parsing: the HTTP edge of domain errors."""

from typing import Any

import grpc
from aiohttp import web

from gateway.client_input import parse_json
from weftcore import jsontext
from weftcore.context import REQUEST_ID_HEADER, request_id_var
from weftcore.errors import InvalidArgument, WeftError, from_rpc_error

JSON_CONTENT_TYPE = "application/json; charset=utf-8"

# Public codes whose HTTP status is not implied by their gRPC status.
_STATUS_BY_CODE = {
    "PAID_PLAN_REQUIRED": 402,
    "INSUFFICIENT_CREDITS": 402,
    "COST_CAP_EXCEEDED": 402,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "INVALID_JSON": 400,
    "METHOD_NOT_ALLOWED": 405,
    "REQUEST_TIMEOUT": 408,
    "HEADERS_TOO_LARGE": 431,
}
_STATUS_BY_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def dumps(data: Any) -> str:
    return jsontext.dumps(data)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=dumps(data),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def http_status(err: WeftError) -> int:
    return _STATUS_BY_CODE.get(err.code) or _STATUS_BY_GRPC.get(err.grpc_code, 500)


def error_body(err: WeftError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.param is not None:
        body["param"] = err.param
    for key, value in err.extra.items():
        # Numbers stay numbers (e.g. `limit` of a 429), whatever the transport made them.
        body[key] = int(value) if isinstance(value, str) and value.isdigit() else value
    body["request_id"] = request_id_var.get()
    return {"error": body}


def error_response(err: WeftError, headers: dict[str, str] | None = None) -> web.Response:
    all_headers = {REQUEST_ID_HEADER: request_id_var.get(), **(headers or {})}
    return json_response(error_body(err), status=http_status(err), headers=all_headers)


def as_weft_error(exc: grpc.RpcError) -> WeftError:
    return from_rpc_error(exc)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object of storable values (gateway.client_input); 400 else."""
    raw = await request.read()  # bounded by client_max_size (413 beyond it)
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise InvalidArgument("Request body must be a JSON object.", code="INVALID_JSON")
    return data


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer.", param=name) from None
    if not low <= value <= high:
        raise InvalidArgument(f"{name} must be between {low} and {high}.", param=name)
    return value
