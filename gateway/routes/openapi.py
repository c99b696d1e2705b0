"""GET /api/v1/openapi.json: the OpenAPI 3.1 document (no key needed)."""

from aiohttp import web

from gateway.http import dumps
from gateway.keys import CONFIG
from gateway.openapi_spec import document

_BODY = web.AppKey("openapi_body", bytes)


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[_BODY], content_type="application/json", charset="utf-8")


def setup(app: web.Application) -> None:
    """Registers the route; the document is rendered once, when the app is built."""
    app[_BODY] = dumps(document(app[CONFIG].public_base_url)).encode()
    app.router.add_get("/api/v1/openapi.json", get_openapi)
