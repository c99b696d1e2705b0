"""Authenticating the bearer token and authorising the call (scopes, plan, allowlist).

Positive authentications are cached in each gateway process, keyed by sha256 of the
token (the raw token is never kept as a key or logged), for `WEFT_AUTH_CACHE_SECONDS`
(default 5, capped at MAX_CACHE_SECONDS). Bound on revocation: a key revoked, or a plan
or scope changed, takes effect in every gateway process at most that many seconds later
(5 s by default) - an entry is never served past its TTL and is never refreshed by use.
A key's own expiry is honoured exactly (the cached entry knows expires_at). Failures are
not cached, so a freshly created key works at once.
"""

import hashlib
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import grpc
from aiohttp import web

from gateway.keys import CONFIG, SERVICES
from weft.auth.v1 import auth_pb2
from weftcore.errors import NotFound, PermissionDenied, Unauthenticated, from_rpc_error
from weftcore.plans import require_paid_plan

TOKEN_PREFIX = "wft_live_"

WORKFLOWS_READ = "workflows:read"
WORKFLOWS_WRITE = "workflows:write"
RUNS_CREATE = "workflow_runs:create"

MAX_CACHE_SECONDS = 10.0
MAX_CACHE_ENTRIES = 10_000
_MAX_TOKEN_CHARS = 200

_UNAUTHENTICATED = "Missing or invalid API key. Send `Authorization: Bearer wft_live_...`."


@dataclass(frozen=True)
class _Entry:
    principal: auth_pb2.Principal
    until: float  # monotonic deadline
    expires_at_unix: int


class PrincipalCache:
    """A bounded TTL map from token hash to principal (oldest entries evicted first)."""

    def __init__(self, ttl: float, max_entries: int = MAX_CACHE_ENTRIES) -> None:
        self.ttl = max(0.0, min(ttl, MAX_CACHE_SECONDS))
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def get(self, token_hash: bytes) -> auth_pb2.Principal | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if time.monotonic() >= entry.until or (
            entry.expires_at_unix and time.time() >= entry.expires_at_unix
        ):
            del self._entries[token_hash]
            return None
        return entry.principal

    def put(self, token_hash: bytes, principal: auth_pb2.Principal) -> None:
        if self.ttl <= 0:
            return
        self._entries.pop(token_hash, None)
        self._entries[token_hash] = _Entry(
            principal, time.monotonic() + self.ttl, principal.expires_at_unix
        )
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


_CACHE = web.AppKey("auth_cache", PrincipalCache)
KEY_ID = web.RequestKey("key_id", str)  # the authenticated key's id, for the access log
# For apps built without setup_auth (e.g. a test app): one cache per app all the same.
_LATE: "weakref.WeakKeyDictionary[web.Application, PrincipalCache]" = weakref.WeakKeyDictionary()


def setup_auth(app: web.Application) -> None:
    """Give the app its principal cache (call after app[CONFIG] is set, before start)."""
    app[_CACHE] = PrincipalCache(app[CONFIG].auth_cache_seconds)


def _cache(request: web.Request) -> PrincipalCache:
    app = request.app
    cache = app.get(_CACHE) or _LATE.get(app)
    if cache is None:
        cache = _LATE[app] = PrincipalCache(app[CONFIG].auth_cache_seconds)
    return cache


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if (
        scheme.lower() != "bearer"
        or not token.startswith(TOKEN_PREFIX)
        or len(token) > _MAX_TOKEN_CHARS
    ):
        raise Unauthenticated(_UNAUTHENTICATED)
    return token


async def authenticate(request: web.Request) -> auth_pb2.Principal:
    """The principal behind the request's key; 401 for any kind of bad key."""
    token = bearer_token(request)
    token_hash = hashlib.sha256(token.encode()).digest()
    cache = _cache(request)
    principal = cache.get(token_hash)
    if principal is not None:
        return principal
    try:
        principal = await request.app[SERVICES].auth.Authenticate(
            auth_pb2.AuthenticateRequest(token=token), timeout=5
        )
    except grpc.RpcError as exc:
        err = from_rpc_error(exc)
        if isinstance(err, Unauthenticated):
            # One answer for every bad key, whatever the service said.
            raise Unauthenticated(_UNAUTHENTICATED) from None
        raise err from None
    cache.put(token_hash, principal)
    return principal


async def require(request: web.Request, scope: str | None = None) -> auth_pb2.Principal:
    """Authenticate, then check the plan allows API access and the key has `scope`."""
    principal = await authenticate(request)
    request[KEY_ID] = principal.key_id  # for the access log line
    require_paid_plan(principal.plan)
    if scope is not None and scope not in principal.scopes:
        raise PermissionDenied(f"This API key lacks the `{scope}` scope.", code="MISSING_SCOPE")
    return principal


def workflow_allowed(principal: auth_pb2.Principal, workflow_id: str) -> bool:
    return not principal.has_allowlist or workflow_id in principal.workflow_allowlist


def check_workflow_allowed(principal: auth_pb2.Principal, workflow_id: str) -> None:
    """404 for a workflow outside the key's allowlist, exactly like an unknown workflow."""
    if not workflow_allowed(principal, workflow_id):
        raise NotFound(f"No workflow {workflow_id}.")


def account_id(principal: auth_pb2.Principal) -> str:
    """The account that rate limits and credits apply to: the team if any, else the user."""
    return principal.team_id or principal.user_id
