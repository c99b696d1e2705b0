"""RunsService.BeginIdempotent / CompleteIdempotent: the idempotency mechanism for creating
POSTs handled outside CreateRun (uploads, through the gateway)."""

import asyncpg

from services.runs.store import idempotency
from weft.runs.v1 import runs_pb2 as pb
from weftcore.errors import InvalidArgument


def _check(account_id: str, idem: pb.Idempotency) -> None:
    if not account_id:
        raise InvalidArgument("account_id is required.", param="account_id")
    if not idem.key or not idem.method or not idem.path:
        raise InvalidArgument("idempotency key, method and path are required.", param="key")


async def begin_rpc(
    pool: asyncpg.Pool, request: pb.BeginIdempotentRequest
) -> pb.BeginIdempotentResponse:
    """Claim the key (committed as in flight) or answer the stored response to replay."""
    idem = request.idempotency
    _check(request.account_id, idem)
    async with pool.acquire() as conn, conn.transaction():
        got = await idempotency.begin(
            conn, request.account_id, idem.key, idem.method, idem.path, idem.request_hash
        )
    if got.proceed:
        return pb.BeginIdempotentResponse(outcome="proceed")
    return pb.BeginIdempotentResponse(
        outcome="replay", http_status=got.http_status, body_json=got.body_json
    )


async def complete_rpc(
    pool: asyncpg.Pool, request: pb.CompleteIdempotentRequest
) -> pb.CompleteIdempotentResponse:
    """Store the answer (store=true and a storable status) or forget the key."""
    idem = request.idempotency
    _check(request.account_id, idem)
    async with pool.acquire() as conn:
        if request.store:
            await idempotency.complete(
                conn, request.account_id, idem.key, request.http_status, request.body_json
            )
        else:
            await idempotency.forget(conn, request.account_id, idem.key)
    return pb.CompleteIdempotentResponse()
