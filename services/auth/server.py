"""gRPC surface of the auth service: wiring and the servicer (gRPC <-> domain)."""

from contextlib import AsyncExitStack

from weft.auth.v1 import auth_pb2, auth_pb2_grpc
from weftcore.config import ServiceConfig
from weftcore.db import create_pool, ping
from weftcore.grpc_server import GrpcServer
from weftcore.service import Check

GRPC_SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name


class AuthServiceServicer(auth_pb2_grpc.AuthServiceServicer):
    """Methods not overridden here answer UNIMPLEMENTED."""


async def wire(
    config: ServiceConfig, server: GrpcServer, stack: AsyncExitStack
) -> dict[str, Check]:
    pool = await create_pool(config.database_url, "auth")
    stack.push_async_callback(pool.close)
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServiceServicer(), server.server)  # type: ignore[abstract]

    async def database() -> bool:
        return await ping(pool)

    return {"database": database}
