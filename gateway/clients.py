"""The gateway's gRPC stubs to the four services."""

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2_grpc

from gateway.config import GatewayConfig
from weft.auth.v1 import auth_pb2_grpc
from weft.billing.v1 import billing_pb2_grpc
from weft.runs.v1 import runs_pb2, runs_pb2_grpc
from weft.storage.v1 import storage_pb2_grpc
from weftcore.batching import Batcher
from weftcore.grpc_client import batched_rpc, open_channel

CreateRunBatcher = Batcher[runs_pb2.CreateRunRequest, runs_pb2.CreateRunResponse]


@dataclass(frozen=True)
class Services:
    channels: dict[str, grpc.aio.Channel]
    auth: auth_pb2_grpc.AuthServiceStub
    runs: runs_pb2_grpc.RunsServiceStub
    storage: storage_pb2_grpc.StorageServiceStub
    billing: billing_pb2_grpc.BillingServiceStub
    # CreateRun, with this process's concurrent requests sharing CreateRuns calls.
    create_run: CreateRunBatcher

    def health(self, name: str) -> health_pb2_grpc.HealthStub:
        return health_pb2_grpc.HealthStub(self.channels[name])

    async def close(self) -> None:
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
        storage=storage_pb2_grpc.StorageServiceStub(channels["storage"]),
        billing=billing_pb2_grpc.BillingServiceStub(channels["billing"]),
        create_run=batched_create_run(runs_pb2_grpc.RunsServiceStub(channels["runs"])),
    )


def batched_create_run(stub: runs_pb2_grpc.RunsServiceStub) -> CreateRunBatcher:
    """`call(request)` answers its CreateRunResponse or raises its WeftError."""
    return batched_rpc(
        stub.CreateRuns,
        lambda requests: runs_pb2.CreateRunsRequest(requests=requests),
        lambda outcome: outcome.response,
        timeout=30,
    )
