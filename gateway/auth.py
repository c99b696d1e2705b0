"""Authenticating the bearer token and authorising the call (scopes, plan)."""

from aiohttp import web

from gateway.keys import SERVICES
from weft.auth.v1 import auth_pb2
from weftcore.errors import PermissionDenied, Unauthenticated, WeftError

TOKEN_PREFIX = "wft_live_"

WORKFLOWS_READ = "workflows:read"
RUNS_CREATE = "workflow_runs:create"

_UNAUTHENTICATED = "Missing or invalid API key. Send `Authorization: Bearer wft_live_...`."


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
        raise Unauthenticated(_UNAUTHENTICATED)
    return token


async def authenticate(request: web.Request) -> auth_pb2.Principal:
    """The principal behind the request's key; 401 for any kind of bad key."""
    token = bearer_token(request)
    try:
        return await request.app[SERVICES].auth.Authenticate(
            auth_pb2.AuthenticateRequest(token=token), timeout=5
        )
    except WeftError:
        raise


async def require(request: web.Request, scope: str | None = None) -> auth_pb2.Principal:
    """Authenticate, then check the plan allows API access and the key has `scope`."""
    principal = await authenticate(request)
    if principal.plan == "free":
        raise WeftError(
            "API access needs a paid plan. Upgrade to pro, team or enterprise.",
            code="PAID_PLAN_REQUIRED",
        )
    if scope is not None and scope not in principal.scopes:
        raise PermissionDenied(f"This API key lacks the `{scope}` scope.", code="MISSING_SCOPE")
    return principal
