"""The HTTP server under the app: answers to requests aiohttp could not parse, and
connections that hold a slot without sending.

aiohttp answers a request it cannot parse (a bare LF, a 20 KB header, 150 headers) from
its protocol handler, before any middleware, with a `text/plain` body that quotes the
offending bytes, and logs them whole: an `Authorization` header among them would leak
its token into the response and the log. `EnvelopeRequestHandler` answers those with the
error envelope and a fixed message instead, and logs only the kind of error.
aiohttp has no public hook for that answer, hence the small `AppRunner` subclass.

A request head must arrive whole within the idle timeout: aiohttp's keep-alive timer
closes a connection whose next request head has not completed by then (it is armed at
connect and after every response), so a client trickling header lines cannot hold a
connection open. Bodies are watched by `body_watchdog` (gateway.middleware).
"""

import asyncio
import logging
from typing import Any

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.http import error_response
from weftcore.context import request_id_var
from weftcore.errors import InvalidArgument, WeftError
from weftcore.ids import new_id

log = logging.getLogger(__name__)


def _protocol_error(status: int, exc: BaseException | None) -> WeftError:
    text = str(exc or "").lower()
    if isinstance(exc, LineTooLong) or "too many headers" in text or "too long" in text:
        return WeftError(
            "The request's headers are too large (a header line over 8 KiB, or over 128 headers).",
            code="HEADERS_TOO_LARGE",
        )
    if status == 400:
        return InvalidArgument(
            "Malformed HTTP request: it could not be parsed.", code="INVALID_REQUEST"
        )
    return WeftError("The request could not be handled.", code="INTERNAL")


class EnvelopeRequestHandler(RequestHandler):  # type: ignore[misc]
    """aiohttp's protocol handler, answering unparseable requests with the envelope."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        rid = new_id("req")
        request_id_var.set(rid)
        err = _protocol_error(status, exc)
        # Never the exception's text: it quotes the raw request, tokens included.
        log.warning(
            "unparseable request refused",
            extra={"status": status, "error_kind": type(exc).__name__, "code": err.code},
        )
        response = error_response(err)
        response.force_close()
        return response


class EnvelopeServer(web.Server):
    def __call__(self) -> RequestHandler:
        return EnvelopeRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections use EnvelopeRequestHandler."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        kwargs: dict[str, Any] = dict(server._kwargs)
        return EnvelopeServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **kwargs,
        )


class BodyTooSlow(WeftError):
    default_code = "REQUEST_TIMEOUT"


async def watch_body(content: StreamReader, min_bytes_per_second: int, window: float) -> None:
    """Fails the body's reads with 408 REQUEST_TIMEOUT once fewer than
    `min_bytes_per_second * window` bytes arrived in a window before the body ended.
    The reader in the handler (JSON, multipart, an upload streaming to storage) then
    raises, which ends the request and cancels what it was feeding."""
    floor = min_bytes_per_second * window
    seen = content.total_bytes
    while not content.is_eof():
        await asyncio.sleep(window)
        if content.is_eof():
            return
        if content.total_bytes - seen < floor:
            content.set_exception(
                BodyTooSlow(
                    f"The request body arrived slower than {min_bytes_per_second} bytes/s; "
                    "send it faster or in one piece."
                )
            )
            return
        seen = content.total_bytes
