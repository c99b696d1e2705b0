"""The gateway's gRPC stubs to the four services."""

import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2_grpc

from gateway.config import GatewayConfig
from weft.auth.v1 import auth_pb2_grpc
from weft.billing.v1 import billing_pb2_grpc
from weft.idempotency.v1 import idempotency_pb2_grpc
from weft.runs.v1 import runs_pb2, runs_pb2_grpc
from weft.storage.v1 import storage_pb2_grpc
from weftcore.batching import Batcher
from weftcore.errors import Internal, WeftError, from_rpc_error, from_status_bytes
from weftcore.grpc_client import open_channel
from weftcore.grpc_server import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

CreateRunBatcher = Batcher[runs_pb2.CreateRunRequest, runs_pb2.CreateRunResponse]

# A CreateRuns call carries at most this much: half the gRPC message cap, so however
# many big requests arrive together, no batch of them is refused for its size.
MAX_BATCH_BYTES = MAX_MESSAGE_BYTES // 2
# What `repeated CreateRunRequest requests = 1` adds per item: tag, length varint.
_ITEM_FRAMING_BYTES = 6
CREATE_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Services:
    channels: dict[str, grpc.aio.Channel]
    auth: auth_pb2_grpc.AuthServiceStub
    runs: runs_pb2_grpc.RunsServiceStub
    # Served by the runs process, which keeps the records (CreateRun uses them too).
    idempotency: idempotency_pb2_grpc.IdempotencyServiceStub
    storage: storage_pb2_grpc.StorageServiceStub
    billing: billing_pb2_grpc.BillingServiceStub
    # CreateRun, with this process's concurrent requests sharing CreateRuns calls.
    create_run: CreateRunBatcher

    def health(self, name: str) -> health_pb2_grpc.HealthStub:
        return health_pb2_grpc.HealthStub(self.channels[name])

    async def close(self) -> None:
        # Creations already batched still reach the runs service before the channels go.
        await self.create_run.close()
        for channel in self.channels.values():
            await channel.close()


def connect_services(config: GatewayConfig) -> Services:
    channels = {
        "auth": open_channel(config.auth_addr),
        "runs": open_channel(config.runs_addr),
        "storage": open_channel(config.storage_addr),
        "billing": open_channel(config.billing_addr),
    }
    return Services(
        channels=channels,
        auth=auth_pb2_grpc.AuthServiceStub(channels["auth"]),
        runs=runs_pb2_grpc.RunsServiceStub(channels["runs"]),
        idempotency=idempotency_pb2_grpc.IdempotencyServiceStub(channels["runs"]),
        storage=storage_pb2_grpc.StorageServiceStub(channels["storage"]),
        billing=billing_pb2_grpc.BillingServiceStub(channels["billing"]),
        create_run=batched_create_run(runs_pb2_grpc.RunsServiceStub(channels["runs"])),
    )


class BatchTooLarge(Exception):
    """gRPC refused a CreateRuns message for its size: no request of it ran (the
    Batcher then sends each alone, so this never reaches a caller)."""


def _encoded_size(request: runs_pb2.CreateRunRequest) -> int:
    return request.ByteSize() + _ITEM_FRAMING_BYTES


def _too_large(exc: BaseException) -> bool:
    return isinstance(exc, BatchTooLarge)


def batched_create_run(
    stub: runs_pb2_grpc.RunsServiceStub, max_batch_bytes: int = MAX_BATCH_BYTES
) -> CreateRunBatcher:
    """`call(request)` answers its CreateRunResponse or raises its WeftError.

    Batches are capped by encoded size. A batch the transport still refuses for its size
    is retried one request per call; any other failure of a whole call is not (a run
    without an Idempotency-Key could be created twice): its callers get the error.
    Either way the failure is logged with the request ids it hit."""

    async def send(
        requests: list[runs_pb2.CreateRunRequest],
    ) -> list[runs_pb2.CreateRunResponse | BaseException]:
        try:
            reply = await stub.CreateRuns(
                runs_pb2.CreateRunsRequest(requests=requests), timeout=CREATE_TIMEOUT_SECONDS
            )
        except grpc.RpcError as exc:
            raise _call_failed(exc, requests) from None
        return [
            from_status_bytes(outcome.error) if outcome.error else outcome.response
            for outcome in reply.outcomes
        ]

    return Batcher(send, size=_encoded_size, max_bytes=max_batch_bytes, retry_alone=_too_large)


def _call_failed(
    exc: grpc.RpcError, requests: list[runs_pb2.CreateRunRequest]
) -> WeftError | BatchTooLarge:
    """The error of a whole CreateRuns call, logged once with every request id it hit."""
    err = from_rpc_error(exc)
    code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else grpc.StatusCode.UNKNOWN
    # RESOURCE_EXHAUSTED without a domain error: the message was over the size cap.
    too_large = code == grpc.StatusCode.RESOURCE_EXHAUSTED and isinstance(err, Internal)
    log.error(
        "CreateRuns call failed",
        extra={
            "request_ids": [r.request_id for r in requests],
            "items": len(requests),
            "bytes": sum(_encoded_size(r) for r in requests),
            "grpc_code": code.name,
            "error": err.message,
        },
    )
    if too_large and len(requests) > 1:
        return BatchTooLarge("The batch was too large.")
    if too_large:
        return WeftError("The request is too large to create a run.", code="PAYLOAD_TOO_LARGE")
    return err
