"""Cross-origin requests from browsers (spec/API.md, CORS): only configured origins.

API calls carry a bearer key, never cookies, so no answer says
`Access-Control-Allow-Credentials`, and an allowed origin is echoed back rather than
answered with `*`. A preflight (`OPTIONS` with `Access-Control-Request-Method`) is
answered here, before routing would call it a wrong method; every other answer to an
allowed origin, errors and event streams included, carries the CORS headers (added as
the headers go out, `on_response_prepare`, so streams get them too).
"""

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_urldispatcher import MatchInfoError

from weftcore.errors import NotFound, PermissionDenied

ALLOWED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "X-Request-Id",
                   "Last-Event-ID")  # fmt: skip
EXPOSED_HEADERS = ("X-Request-Id", "Idempotent-Replayed", "RateLimit-Limit",
                   "RateLimit-Remaining", "RateLimit-Reset", "Retry-After")  # fmt: skip
MAX_AGE_SECONDS = 600


@dataclass(frozen=True)
class CorsPolicy:
    """The origins browsers may call the API from (`WEFT_CORS_ORIGINS`); none: CORS off."""

    origins: frozenset[str]

    @classmethod
    def of(cls, origins: Iterable[str]) -> "CorsPolicy":
        return cls(frozenset(o.rstrip("/") for o in origins if o))

    def allows(self, origin: str | None) -> bool:
        return origin is not None and origin in self.origins


CORS = web.AppKey("cors", CorsPolicy)
# A public endpoint's own origins (`endpoint.cors_origins`), by slug: set by its routes.
EndpointOrigins = Callable[[web.Request, str], Awaitable[Iterable[str]]]
ENDPOINT_ORIGINS: web.AppKey[EndpointOrigins] = web.AppKey("endpoint_origins")
_ALLOWED_HERE = web.RequestKey("cors_allowed_here", str)
_ENDPOINT_PATH = re.compile(r"^/api/v1/endpoints/([^/]+)(?:/runs/[^/]+)?$")


def allow_origin(request: web.Request, origins: Iterable[str]) -> None:
    """Admit the request's origin for this answer too when it is one of `origins` (a
    public endpoint's own)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin in {o.rstrip("/") for o in origins}:
        request[_ALLOWED_HERE] = origin


def _allowed(request: web.Request, origin: str | None) -> bool:
    return _policy(request).allows(origin) or (
        origin is not None and request.get(_ALLOWED_HERE) == origin
    )


_NO_ORIGINS = CorsPolicy(frozenset())


def _policy(request: web.Request) -> CorsPolicy:
    """The API's policy; the console (a sub-app, cookie-authenticated) allows no other
    origin."""
    return request.app.get(CORS) or _NO_ORIGINS


def is_preflight(request: web.Request) -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


async def preflight(request: web.Request) -> web.Response:
    """The answer to a preflight: 204 with what the route allows, 403 for an origin
    that is not configured (nor, at a public endpoint, its own), 404 for a path that is
    no route."""
    origin = request.headers["Origin"]
    endpoint = _ENDPOINT_PATH.match(request.path)
    lookup = request.app.get(ENDPOINT_ORIGINS)
    if endpoint and lookup is not None and not _policy(request).allows(origin):
        allow_origin(request, await lookup(request, endpoint.group(1)))
    if not _allowed(request, origin):
        raise PermissionDenied(
            f"Origin {origin!r} may not call this API from a browser.",
            code="CORS_ORIGIN_NOT_ALLOWED",
        )
    methods = _route_methods(request)
    if not methods:
        raise NotFound("No such route.")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(sorted(methods)),
            "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
            "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
            "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        },
    )


def _route_methods(request: web.Request) -> set[str]:
    info = request.match_info
    if not isinstance(info, MatchInfoError):
        return {request.method}
    # No route answers OPTIONS: the router's 405 knows what the path allows (404: none).
    exc = info.http_exception
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return set(exc.allowed_methods) - {"OPTIONS"}
    return set()


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the CORS headers of an answer to an allowed origin."""
    origin = request.headers.get("Origin")
    if not _allowed(request, origin) or "Access-Control-Allow-Origin" in response.headers:
        return
    assert origin is not None
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
    response.headers.add("Vary", "Origin")


def setup(app: web.Application, origins: Iterable[str]) -> None:
    app[CORS] = CorsPolicy.of(origins)
    app.on_response_prepare.append(add_cors_headers)
