"""Idempotency-Key for creating POSTs handled outside CreateRun (e.g. uploads), over the
IdempotencyService (records in Postgres, shared by every replica). Run creation does the
same inside CreateRun's own transaction.

    idem, replay = await begin(request, account_id, request_hash)
    if replay is not None:
        return replay
    try:
        response = ...do the work...
    except WeftError as err:
        await complete(request, account_id, idem, error_response(err)); raise
    await complete(request, account_id, idem, response)
    return response
"""

from aiohttp import web

from gateway.keys import SERVICES
from weft.idempotency.v1 import idempotency_pb2
from weftcore.errors import InvalidArgument

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_CHARS = 256
# Refusals: the request never started work, so the key stays usable (spec/API.md).
NOT_STORED = frozenset({400, 401, 403, 404, 405, 413, 415, 429})


def idempotency_key(request: web.Request) -> str:
    """The Idempotency-Key header ("" when absent); 400 unless 1-256 printable chars."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return ""
    if not 1 <= len(key) <= MAX_KEY_CHARS or not all(" " <= c <= "~" for c in key):
        raise InvalidArgument(
            f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable characters.",
            param=IDEMPOTENCY_HEADER,
        )
    return key


def replay_response(http_status: int, body_json: str) -> web.Response:
    return web.Response(
        text=body_json,
        status=http_status,
        content_type="application/json",
        charset="utf-8",
        headers={REPLAYED_HEADER: "true"},
    )


async def begin(
    request: web.Request, account_id: str, request_hash: str
) -> tuple[idempotency_pb2.Idempotency | None, web.Response | None]:
    """Claim the request's key: (claim, None) to proceed, (None, response) to replay, or
    (None, None) without a key. Conflicts raise (409 via the envelope)."""
    key = idempotency_key(request)
    if not key:
        return None, None
    idem = idempotency_pb2.Idempotency(
        key=key, method=request.method, path=request.path, request_hash=request_hash
    )
    reply = await request.app[SERVICES].idempotency.Begin(
        idempotency_pb2.BeginRequest(account_id=account_id, idempotency=idem), timeout=10
    )
    if reply.outcome == "replay":
        return None, replay_response(reply.http_status, reply.body_json)
    return idem, None


async def complete(
    request: web.Request,
    account_id: str,
    idem: idempotency_pb2.Idempotency | None,
    response: web.Response,
) -> None:
    """Store `response` for replays, or release the key when it is a refusal."""
    if idem is None:
        return
    store = response.status not in NOT_STORED
    body = (response.text or "") if store else ""
    await request.app[SERVICES].idempotency.Complete(
        idempotency_pb2.CompleteRequest(
            account_id=account_id,
            idempotency=idem,
            http_status=response.status,
            body_json=body,
            store=store,
        ),
        timeout=10,
    )
