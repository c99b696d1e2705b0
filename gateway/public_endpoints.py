"""Keyless calls of public endpoints (spec/API.md, v1.1): who pays, the client's address,
what a stranger may reference, and the run token that lets them read their run.

A workflow whose latest published version says `endpoint.auth: public` takes calls
without a key. Such a call runs as its payer (the owner; a team's workflow: its latest
publisher), with `Caller.client_ip` set so the runs service scopes idempotency keys and
per-minute limits to the client, applies the cost cap and refuses other versions. The
answer carries a run token: `GET /api/v1/endpoints/:slug/runs/:id` with
`Authorization: Bearer wrt_...` reads that one run, and nothing else.
"""

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.auth import PrincipalCache
from gateway.keys import CONFIG, SERVICES
from weft.auth.v1 import auth_pb2
from weft.runs.v1 import runs_pb2
from weftcore.errors import InvalidArgument, Unauthenticated

log = logging.getLogger(__name__)

RUN_TOKEN_PREFIX = "wrt_"
_PAYERS = web.AppKey("endpoint_payers", PrincipalCache)
_TOKEN_KEY = web.AppKey("run_token_key", bytes)
# What a keyless caller may not name: ids of the payer's files, a delivery address.
_REFUSED_OPTIONS = ("attachment_ids", "webhook_url")


@dataclass(frozen=True)
class KeylessCall:
    """A call of a public endpoint without a key."""

    slug: str
    client_ip: str


def setup(app: web.Application) -> None:
    """The payer cache and the run-token key (WEFT_RUN_TOKEN_SECRET; unset: one per
    process, which only suits a single gateway process)."""
    config = app[CONFIG]
    app[_PAYERS] = PrincipalCache(config.auth_cache_seconds)
    secret = config.run_token_secret
    if not secret:
        log.warning(
            "WEFT_RUN_TOKEN_SECRET is unset: run tokens of public endpoints are valid only"
            " in this gateway process until it stops"
        )
        secret = secrets.token_hex(32)
    app[_TOKEN_KEY] = hashlib.sha256(b"weft run token\0" + secret.encode()).digest()


async def payer(request: web.Request, endpoint: runs_pb2.Endpoint) -> auth_pb2.Principal:
    """The principal keyless calls of `endpoint` run as (cached like keys' principals)."""
    cache = request.app[_PAYERS]
    cache_key = f"{endpoint.payer_user_id}/{endpoint.payer_team_id}".encode()
    principal = cache.get(cache_key)
    if principal is None:
        principal = await request.app[SERVICES].auth.PrincipalForAccount(
            auth_pb2.PrincipalForAccountRequest(
                user_id=endpoint.payer_user_id, team_id=endpoint.payer_team_id
            ),
            timeout=5,
        )
        cache.put(cache_key, principal)
    return principal


def check_json_options(body: dict[str, Any], declared: set[str]) -> None:
    """A keyless JSON body names no stored file and no webhook: files come as parts."""
    for name in _REFUSED_OPTIONS:
        if name in body and name not in declared:
            raise InvalidArgument(
                f"{name} is not available without an API key on a public endpoint"
                " (send files as multipart parts).",
                param=name,
            )


def check_references(
    fields: Iterable[dict[str, Any]],
    params: dict[str, Any],
    attachment_ids: Iterable[str],
    uploaded: Iterable[str],
) -> None:
    """Every file a keyless run reads was uploaded by this very request: a stranger
    cannot point a run at the payer's other files by id."""
    mine = set(uploaded)
    named = {str(params[f["name"]]) for f in fields if f["type"] == "file" and f["name"] in params}
    for att_id in sorted(named.union(attachment_ids) - mine):
        raise InvalidArgument(
            f"Attachment {att_id} was not uploaded with this call: without an API key,"
            " send files as multipart parts.",
            param="attachment_ids",
        )


def run_token(request: web.Request, run_id: str) -> str:
    """The capability to read one run created by a keyless call."""
    mac = hmac.new(request.app[_TOKEN_KEY], run_id.encode(), hashlib.sha256).digest()
    return RUN_TOKEN_PREFIX + base64.urlsafe_b64encode(mac[:24]).decode().rstrip("=")


def require_run_token(request: web.Request, run_id: str) -> None:
    """401 unless the request's bearer is the run token of `run_id`."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.encode(), run_token(request, run_id).encode()
    ):
        raise Unauthenticated(
            "Missing or invalid run token. Send `Authorization: Bearer wrt_...` as the"
            " endpoint's answer gave it."
        )


def run_links(request: web.Request, slug: str, run_id: str) -> dict[str, str]:
    base = request.app[CONFIG].public_base_url.rstrip("/")
    return {"self": f"{base}/api/v1/endpoints/{slug}/runs/{run_id}"}
