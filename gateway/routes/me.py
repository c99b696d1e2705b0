"""GET /api/v1/me: the account and key behind the token."""

from aiohttp import web

from gateway.auth import require, setup_auth
from gateway.http import json_response


async def get_me(request: web.Request) -> web.Response:
    p = await require(request)
    return json_response(
        {
            "data": {
                "user_id": p.user_id,
                "email": p.email,
                "plan": p.plan,
                "team_id": p.team_id or None,
                "key_id": p.key_id,
                "key_name": p.key_name,
                "key_scopes": list(p.scopes),
                "workflow_allowlist": list(p.workflow_allowlist) if p.has_allowlist else None,
            }
        }
    )


def setup(app: web.Application) -> None:
    """Registers GET /api/v1/me and the gateway's principal cache."""
    setup_auth(app)
    app.router.add_get("/api/v1/me", get_me)
