"""gRPC stubs for the admin CLI, addressed by the same variables the gateway uses."""

from dataclasses import dataclass

import grpc

from weft.auth.v1 import auth_pb2_grpc
from weft.billing.v1 import billing_pb2_grpc
from weft.runs.v1 import runs_pb2_grpc
from weft.storage.v1 import storage_pb2_grpc
from weftcore.config import env_str
from weftcore.grpc_client import open_channel


@dataclass(frozen=True)
class AdminClients:
    channels: list[grpc.aio.Channel]
    auth: auth_pb2_grpc.AuthServiceStub
    runs: runs_pb2_grpc.RunsServiceStub
    storage: storage_pb2_grpc.StorageServiceStub
    billing: billing_pb2_grpc.BillingServiceStub

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


def connect() -> AdminClients:
    auth = open_channel(env_str("WEFT_AUTH_ADDR", "127.0.0.1:7101"))
    runs = open_channel(env_str("WEFT_RUNS_ADDR", "127.0.0.1:7102"))
    storage = open_channel(env_str("WEFT_STORAGE_ADDR", "127.0.0.1:7103"))
    billing = open_channel(env_str("WEFT_BILLING_ADDR", "127.0.0.1:7104"))
    return AdminClients(
        channels=[auth, runs, storage, billing],
        auth=auth_pb2_grpc.AuthServiceStub(auth),
        runs=runs_pb2_grpc.RunsServiceStub(runs),
        storage=storage_pb2_grpc.StorageServiceStub(storage),
        billing=billing_pb2_grpc.BillingServiceStub(billing),
    )
