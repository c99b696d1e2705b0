"""gRPC surface of the runs service: wiring and the servicer (gRPC <-> domain)."""

from contextlib import AsyncExitStack

from weft.runs.v1 import runs_pb2, runs_pb2_grpc
from weftcore.config import ServiceConfig
from weftcore.db import create_pool, ping
from weftcore.grpc_server import GrpcServer
from weftcore.service import Check

GRPC_SERVICE_NAME = runs_pb2.DESCRIPTOR.services_by_name["RunsService"].full_name


class RunsServiceServicer(runs_pb2_grpc.RunsServiceServicer):
    """Methods not overridden here answer UNIMPLEMENTED."""


async def wire(
    config: ServiceConfig, server: GrpcServer, stack: AsyncExitStack
) -> dict[str, Check]:
    pool = await create_pool(config.database_url, "runs")
    stack.push_async_callback(pool.close)
    runs_pb2_grpc.add_RunsServiceServicer_to_server(RunsServiceServicer(), server.server)  # type: ignore[abstract]

    async def database() -> bool:
        return await ping(pool)

    return {"database": database}
