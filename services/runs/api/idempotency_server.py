"""IdempotencyService: the Idempotency-Key records of creating POSTs handled outside
CreateRun (attachment uploads, through the gateway). Served by the runs process because
the records are its database's: CreateRun claims and completes keys in the transaction
that writes the run, and one account has one key space across every creating route."""

from typing import Any

import asyncpg

from services.runs.store import idempotency
from weft.idempotency.v1 import idempotency_pb2 as pb
from weft.idempotency.v1 import idempotency_pb2_grpc
from weftcore.errors import InvalidArgument

GRPC_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["IdempotencyService"].full_name


def _check(account_id: str, idem: pb.Idempotency) -> None:
    if not account_id:
        raise InvalidArgument("account_id is required.", param="account_id")
    if not idem.key or not idem.method or not idem.path:
        raise InvalidArgument("idempotency key, method and path are required.", param="key")


class IdempotencyServicer(idempotency_pb2_grpc.IdempotencyServiceServicer):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def Begin(self, request: pb.BeginRequest, context: Any) -> pb.BeginResponse:
        """Claim the key (committed as in flight) or answer the stored response."""
        idem = request.idempotency
        _check(request.account_id, idem)
        async with self.pool.acquire() as conn, conn.transaction():
            got = await idempotency.begin(
                conn, request.account_id, idem.key, idem.method, idem.path, idem.request_hash
            )
        if got.proceed:
            return pb.BeginResponse(outcome="proceed")
        return pb.BeginResponse(
            outcome="replay", http_status=got.http_status, body_json=got.body_json
        )

    async def Complete(self, request: pb.CompleteRequest, context: Any) -> pb.CompleteResponse:
        """Store the answer (store=true and a storable status) or forget the key."""
        idem = request.idempotency
        _check(request.account_id, idem)
        async with self.pool.acquire() as conn:
            if request.store:
                await idempotency.complete(
                    conn, request.account_id, idem.key, request.http_status, request.body_json
                )
            else:
                await idempotency.forget(conn, request.account_id, idem.key)
        return pb.CompleteResponse()
