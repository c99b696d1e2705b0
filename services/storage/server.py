"""gRPC surface of the storage service: wiring and the servicer (gRPC <-> domain)."""

from contextlib import AsyncExitStack

from weft.storage.v1 import storage_pb2, storage_pb2_grpc
from weftcore.config import ServiceConfig
from weftcore.db import create_pool, ping
from weftcore.grpc_server import GrpcServer
from weftcore.service import Check

GRPC_SERVICE_NAME = storage_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name


class StorageServiceServicer(storage_pb2_grpc.StorageServiceServicer):
    """Methods not overridden here answer UNIMPLEMENTED."""


async def wire(
    config: ServiceConfig, server: GrpcServer, stack: AsyncExitStack
) -> dict[str, Check]:
    pool = await create_pool(config.database_url, "storage")
    stack.push_async_callback(pool.close)
    storage_pb2_grpc.add_StorageServiceServicer_to_server(StorageServiceServicer(), server.server)  # type: ignore[abstract]

    async def database() -> bool:
        return await ping(pool)

    return {"database": database}
