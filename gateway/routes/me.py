"""GET /api/v1/me: the account and key behind the token."""

from aiohttp import web

from gateway.auth import require, setup_auth
from gateway.http import dumps
from weft.auth.v1 import auth_pb2

# Rendered bodies by principal object: the auth cache hands out the same object for a
# key until its entry expires, so the hot path skips building and encoding the JSON.
_BODIES: dict[int, tuple[auth_pb2.Principal, bytes]] = {}
_MAX_BODIES = 1024


def me_data(p: auth_pb2.Principal) -> dict[str, object]:
    return {
        "user_id": p.user_id,
        "email": p.email,
        "plan": p.plan,
        "team_id": p.team_id or None,
        "team_role": p.team_role or None,
        "key_id": p.key_id,
        "key_name": p.key_name,
        "key_scopes": list(p.scopes),
        "workflow_allowlist": list(p.workflow_allowlist) if p.has_allowlist else None,
    }


def _body(p: auth_pb2.Principal) -> bytes:
    hit = _BODIES.get(id(p))
    if hit is not None and hit[0] is p:
        return hit[1]
    body = dumps({"data": me_data(p)}).encode()
    if len(_BODIES) >= _MAX_BODIES:
        _BODIES.clear()
    _BODIES[id(p)] = (p, body)  # holding p keeps its id from being reused
    return body


async def get_me(request: web.Request) -> web.Response:
    p = await require(request)
    return web.Response(body=_body(p), content_type="application/json", charset="utf-8")


def setup(app: web.Application) -> None:
    """Registers GET /api/v1/me and the gateway's principal cache."""
    setup_auth(app)
    app.router.add_get("/api/v1/me", get_me)
