"""The Model Context Protocol at /mcp (Streamable HTTP), for LLM clients.

The same bearer keys, scopes and allowlists as the REST API: the request is
authenticated here (gateway.auth.require) before the MCP SDK's transport sees it, and
the tools go through the gateway's gRPC stubs (gateway/mcp/lifecycle.py).
"""

from collections.abc import AsyncIterator

from aiohttp import web
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from gateway.auth import require
from gateway.http import error_response
from gateway.keys import CONFIG, SERVICES
from gateway.mcp.asgi import serve_asgi
from gateway.mcp.context import SCOPE_KEY, McpCaller
from gateway.mcp.server import build_server
from weftcore.context import REQUEST_ID_HEADER, request_id_var
from weftcore.errors import Unauthenticated

PATH = "/mcp"
_MANAGER = web.AppKey("mcp_sessions", StreamableHTTPSessionManager)
# Where MCP clients look for how to authenticate (RFC 6750).
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="weft"'}


async def _manager_ctx(app: web.Application) -> AsyncIterator[None]:
    # Stateless and streaming: no session to keep between requests (any process can
    # answer any request), and a call's progress travels on its own SSE response.
    manager = StreamableHTTPSessionManager(build_server(), stateless=True, json_response=False)
    app[_MANAGER] = manager
    async with manager.run():
        yield


async def handle(request: web.Request) -> web.StreamResponse:
    try:
        principal = await require(request)
    except Unauthenticated as err:
        return error_response(err, headers=_CHALLENGE)
    rid = request_id_var.get()
    who = McpCaller(
        principal=principal,
        services=request.app[SERVICES],
        base_url=request.app[CONFIG].public_base_url,
        request_id=rid,
    )
    return await serve_asgi(
        request, request.app[_MANAGER].handle_request, {SCOPE_KEY: who}, {REQUEST_ID_HEADER: rid}
    )


def setup(app: web.Application) -> None:
    """Serves POST /mcp (stateless: no GET stream, no session to DELETE; those are 405)."""
    app.cleanup_ctx.append(_manager_ctx)
    app.router.add_post(PATH, handle)
