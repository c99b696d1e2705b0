"""gRPC surface of the billing service: wiring and the servicer (gRPC <-> domain)."""

from contextlib import AsyncExitStack

from weft.billing.v1 import billing_pb2, billing_pb2_grpc
from weftcore.config import ServiceConfig
from weftcore.db import create_pool, ping
from weftcore.grpc_server import GrpcServer
from weftcore.service import Check

GRPC_SERVICE_NAME = billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name


class BillingServiceServicer(billing_pb2_grpc.BillingServiceServicer):
    """Methods not overridden here answer UNIMPLEMENTED."""


async def wire(
    config: ServiceConfig, server: GrpcServer, stack: AsyncExitStack
) -> dict[str, Check]:
    pool = await create_pool(config.database_url, "billing")
    stack.push_async_callback(pool.close)
    billing_pb2_grpc.add_BillingServiceServicer_to_server(BillingServiceServicer(), server.server)  # type: ignore[abstract]

    async def database() -> bool:
        return await ping(pool)

    return {"database": database}
