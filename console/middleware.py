"""The console's edge: security headers on every answer, and failures as HTML pages
(the gateway's envelope middleware around it never sees a console error)."""

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import grpc
from aiohttp import web

from console.render import render
from console.security import SECURITY_HEADERS
from console.session import CsrfFailed, SignInRequired, current
from gateway.http import http_status
from gateway.metrics import route_of
from weftcore.errors import Internal, NotFound, Unauthenticated, WeftError, from_rpc_error

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSRF_MESSAGE = (
    "The form had expired or did not come from this console. Reload the page and try again."
)
_TITLES = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    429: "Too many requests",
}


def to_sign_in(request: web.Request) -> web.Response:
    target = request.path_qs if request.method == "GET" else "/app/runs"
    return web.Response(status=303, headers={"Location": f"/app/login?next={quote(target)}"})


async def error_page(request: web.Request, status: int, message: str) -> web.Response:
    try:
        person = await current(request)
    except Exception:
        person = None  # the error page itself must not fail
    title = _TITLES.get(status, "Something went wrong")
    return render(request, "error.html", person, status=status, title=title, message=message)


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SignInRequired:
        return to_sign_in(request)
    except CsrfFailed:
        return await error_page(request, 403, CSRF_MESSAGE)
    except web.HTTPException as exc:
        if exc.status < 400:
            return web.Response(status=exc.status, headers=exc.headers)
        message = "No such page." if exc.status == 404 else (exc.reason or "Bad request.")
        return await error_page(request, exc.status, message)
    except (WeftError, grpc.RpcError) as exc:
        err = exc if isinstance(exc, WeftError) else from_rpc_error(exc)
        if isinstance(err, Unauthenticated):
            return to_sign_in(request)
        status = http_status(err)
        if status >= 500:
            # The route, not the path: an invite's path holds its token.
            log.error("console call failed", extra={"route": route_of(request), "code": err.code})
        message = "Not found." if isinstance(err, NotFound) else err.message
        return await error_page(request, status, message)
    except Exception:
        log.exception("console error", extra={"route": route_of(request)})
        return await error_page(request, 500, Internal("Internal error.").message)


@web.middleware
async def console_edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _answer(request, handler)
    response.headers.update(SECURITY_HEADERS)
    return response
