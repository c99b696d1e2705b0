"""Adapters from the stage interfaces (Pricer, TextReader) to billing and storage gRPC."""

import asyncio
import logging

import grpc

from services.runs.worker.context import AttachmentText
from services.runs.worker.model import BILLING_ERROR, StageError, TransientError
from weft.billing.v1 import billing_pb2, billing_pb2_grpc
from weft.storage.v1 import storage_pb2, storage_pb2_grpc
from weftcore.errors import NotFound, from_rpc_error

log = logging.getLogger(__name__)

_TRANSIENT = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL}
)


class BillingPricer:
    """Prices a stage's token usage with billing's price table (PriceUsage)."""

    def __init__(self, channel: grpc.aio.Channel, attempts: int = 4) -> None:
        self._stub = billing_pb2_grpc.BillingServiceStub(channel)
        self._attempts = attempts

    async def price(self, stage_id: str, model: str, input_tokens: int, output_tokens: int) -> int:
        request = billing_pb2.PriceUsageRequest(
            stages=[
                billing_pb2.StageUsage(
                    stage=stage_id,
                    model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                )
            ]
        )
        for attempt in range(self._attempts):
            try:
                reply = await self._stub.PriceUsage(request, timeout=5)
                return int(reply.cost_micros[0]) if reply.cost_micros else 0
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _TRANSIENT:
                    # e.g. a model missing from the price table: retrying will not help.
                    err = from_rpc_error(exc)
                    raise StageError(
                        BILLING_ERROR, f"cannot price usage of {model}: {err.message}"
                    ) from None
                log.warning("billing unavailable", extra={"attempt": attempt + 1})
                await asyncio.sleep(0.2 * 2**attempt)
        raise TransientError("billing is unavailable to price usage")


class StorageTextReader:
    """Reads attachments' extracted text (ReadText), checked against the run's owner.

    One call per attachment, each text cut to `max_chars`: a reply then stays under a
    megabyte however many attachments a run has, where one reply for all of them could
    pass gRPC's 8 MiB message limit (20 texts of 200,000 three-byte characters). One
    after the other, as storage read them before: it loads each whole text to cut it."""

    def __init__(self, channel: grpc.aio.Channel, max_chars: int = 200_000) -> None:
        self._stub = storage_pb2_grpc.StorageServiceStub(channel)
        self._max_chars = max_chars

    async def __call__(self, owner_user_id: str, attachment_ids: list[str]) -> list[AttachmentText]:
        items = [await self._read(owner_user_id, a) for a in dict.fromkeys(attachment_ids)]
        return [
            AttachmentText(
                id=item.attachment.id,
                filename=item.attachment.original_filename,
                kind=item.attachment.kind,
                text=item.text,
                truncated=item.truncated,
            )
            for item in items
        ]

    async def _read(self, owner_user_id: str, attachment_id: str) -> storage_pb2.AttachmentText:
        request = storage_pb2.ReadTextRequest(
            attachment_ids=[attachment_id], owner_user_id=owner_user_id, max_chars=self._max_chars
        )
        try:
            reply = await self._stub.ReadText(request, timeout=30)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _TRANSIENT:
                raise TransientError("storage is unavailable to read attachments") from None
            err = from_rpc_error(exc)
            if isinstance(err, NotFound):
                raise LookupError(err.message) from None
            raise LookupError(f"{err.code}: {err.message}") from None
        (item,) = reply.items
        return item
