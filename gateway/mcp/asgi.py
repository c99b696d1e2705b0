"""Serving one aiohttp request with an ASGI application (the MCP SDK's transport).

The body is read by aiohttp first (bounded by the app's client_max_size: 413 beyond
it), so the ASGI side gets it in one message. After the body, `receive` answers
`http.disconnect` only once the client has gone: the SDK's SSE responses listen for it
to stop streaming.
"""

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]
_DISCONNECT_POLL_SECONDS = 0.5


def _scope(request: web.Request, extra: dict[str, Any]) -> dict[str, Any]:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.split("?", 1)[0].encode(),
        "query_string": request.query_string.encode(),
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in request.raw_headers],
        "client": tuple(peer[:2]) if isinstance(peer, tuple) else None,
        "server": tuple(sock[:2]) if isinstance(sock, tuple) else None,
        "state": {},
        **extra,
    }


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def serve_asgi(
    request: web.Request,
    app: ASGIApp,
    extra_scope: dict[str, Any],
    extra_headers: dict[str, str],
) -> web.StreamResponse:
    """Run `app` for `request`; answers the response it streamed."""
    body = await request.read()
    body_sent = False
    response: web.StreamResponse | None = None
    start: Message | None = None

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # aiohttp offers nothing to await for a client's going: look now and then.
        while not _gone(request):  # noqa: ASYNC110
            await asyncio.sleep(_DISCONNECT_POLL_SECONDS)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal response, start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body":
            return
        if response is None:
            assert start is not None, "ASGI body before http.response.start"
            headers: CIMultiDict[str] = CIMultiDict(extra_headers)
            for name, value in start.get("headers", []):
                headers.add(name.decode("latin-1"), value.decode("latin-1"))
            response = web.StreamResponse(status=start["status"], headers=headers)
            await response.prepare(request)
        await response.write(message.get("body", b""))
        if not message.get("more_body", False):
            await response.write_eof()

    await app(_scope(request, extra_scope), receive, send)
    if response is None:
        raise RuntimeError("the ASGI application sent no response")
    return response
