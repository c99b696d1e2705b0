"""Request id, size caps and the one place where every failure becomes the envelope."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web

from gateway import metrics
from gateway.auth import KEY_ID
from gateway.client_input import check_url_values
from gateway.config import GatewayConfig
from gateway.cors import is_preflight, preflight
from gateway.http import error_response
from gateway.http_server import watch_body
from gateway.ratelimit import rate_limited_headers
from weftcore.context import REQUEST_ID_HEADER, request_id_var
from weftcore.errors import Internal, InvalidArgument, NotFound, WeftError, from_rpc_error
from weftcore.ids import new_id

log = logging.getLogger(__name__)
# One line per request: method, route, status, duration, key id (never the token).
access_log = logging.getLogger("gateway.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_MULTIPART = "multipart/form-data"


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and all(" " <= c <= "~" for c in value)


def _from_http_exception(exc: web.HTTPException) -> WeftError:
    if exc.status == 404:
        return NotFound("No such route.")
    if exc.status == 405:
        return InvalidArgument("Method not allowed for this route.", code="METHOD_NOT_ALLOWED")
    if exc.status == 413:
        return WeftError("Request body is too large.", code="PAYLOAD_TOO_LARGE")
    if exc.status == 415:
        return WeftError("Unsupported content type.", code="UNSUPPORTED_MEDIA_TYPE")
    if 400 <= exc.status < 500:
        return InvalidArgument(exc.reason or "Bad request.", code="INVALID_REQUEST")
    return Internal("Internal error.")


def make_middleware(config: GatewayConfig) -> Any:
    max_json_bytes = config.max_json_bytes

    @web.middleware
    async def envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
        sent = request.headers.get(REQUEST_ID_HEADER)
        rid = sent if sent is not None and _valid_request_id(sent) else new_id("req")
        request_id_var.set(rid)
        started = time.perf_counter()
        watchdog = None
        if not request.content.is_eof():
            watchdog = asyncio.create_task(
                watch_body(
                    request.content,
                    config.body_min_bytes_per_second,
                    config.body_rate_window_seconds,
                )
            )
        try:
            # Refuse a declared-too-large JSON body before reading a byte of it; uploads
            # (multipart) enforce their own, larger caps while streaming.
            length = request.content_length
            if (
                length is not None
                and length > max_json_bytes
                and not request.content_type.startswith(_MULTIPART)
            ):
                raise WeftError(
                    f"Request body is over the {max_json_bytes}-byte limit.",
                    code="PAYLOAD_TOO_LARGE",
                )
            check_url_values(request.match_info, "Path parameter")
            check_url_values(request.query, "Query parameter")
            response: web.StreamResponse = (
                await preflight(request) if is_preflight(request) else await handler(request)
            )
        except WeftError as err:
            response = error_response(err, headers=rate_limited_headers(err))
        except grpc.RpcError as exc:
            mapped = from_rpc_error(exc)
            response = error_response(mapped, headers=rate_limited_headers(mapped))
            if response.status >= 500:
                log.error(
                    "service call failed",
                    extra={"path": request.path, "code": mapped.code, "grpc": str(exc.code())},
                )
        except web.HTTPException as exc:
            response = error_response(_from_http_exception(exc), headers=_allow_header(exc))
        except Exception:
            log.exception("unhandled error", extra={"path": request.path})
            response = error_response(Internal("Internal error."))
        finally:
            if watchdog is not None:
                watchdog.cancel()
        if not request.content.is_eof():
            # The body was not read to its end (refused early, or too slow): the
            # connection cannot carry another request.
            response.force_close()
        response.headers[REQUEST_ID_HEADER] = rid
        elapsed = time.perf_counter() - started
        metrics.observe(request, response.status, elapsed)
        access_log.info(
            "request",
            extra={
                "method": request.method,
                "route": metrics.route_of(request),
                "status": response.status,
                "duration_ms": round(elapsed * 1000, 2),
                "key_id": request.get(KEY_ID, ""),
            },
        )
        return response

    return envelope


def _allow_header(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}
