"""The runs service process: settings, resources, background loops and the servicer,
wired for weftcore.service.main. What it opens goes on the exit stack, which closes it
in reverse order once the gRPC server has stopped."""

from contextlib import AsyncExitStack

from services.runs.api.idempotency_server import IdempotencyServicer
from services.runs.api.server import RunsServiceServicer
from services.runs.config import RunsConfig
from services.runs.delivery.outbox import OutboxRelay
from services.runs.delivery.webhooks import WebhookDispatcher
from services.runs.domain.create import RunCreator
from services.runs.domain.open_waits import OpenWaits
from services.runs.domain.service import RunsService
from services.runs.domain.watch import RunWatcher
from services.runs.domain.workflow_dir import apply_workflow_dir
from services.runs.metrics import survey_loop
from services.runs.store.idempotency import PgIdempotencyStore
from services.runs.store.notify import Notifier
from services.runs.store.ratelimit import PgRateLimiter
from services.runs.store.writer import RunWriter
from weft.billing.v1 import billing_pb2, billing_pb2_grpc
from weft.idempotency.v1 import idempotency_pb2_grpc
from weft.runs.v1 import runs_pb2_grpc
from weft.storage.v1 import storage_pb2_grpc
from weftcore.background import BackgroundTasks
from weftcore.config import ServiceConfig
from weftcore.db import create_pool, ping
from weftcore.grpc_client import batched_rpc, open_channel
from weftcore.grpc_server import GrpcServer
from weftcore.nats import connect_retrying, ensure_streams
from weftcore.service import Check


async def wire(
    config: ServiceConfig, server: GrpcServer, stack: AsyncExitStack
) -> dict[str, Check]:
    runs_config = RunsConfig.from_env()
    pool = await create_pool(config.database_url, "runs", min_size=4, max_size=20, light_reset=True)
    stack.push_async_callback(pool.close)
    nc = await connect_retrying(config.nats_url, "weft-runs")
    stack.push_async_callback(nc.drain)
    await ensure_streams(nc.jetstream())

    relay = OutboxRelay(pool, nc)
    webhooks = WebhookDispatcher(pool, runs_config.webhooks)
    notifier = Notifier(config.database_url, "runs", relay.wake, webhooks.wake)
    tasks = BackgroundTasks()
    stack.push_async_callback(tasks.close)  # before NATS drains and the pool closes
    tasks.start("outbox-relay", relay.run)
    tasks.start("runs-notifier", notifier.run)
    tasks.start("webhook-dispatcher", webhooks.run)
    tasks.start("runs-survey", lambda: survey_loop(pool))

    billing_channel = open_channel(runs_config.billing_addr)
    storage_channel = open_channel(runs_config.storage_addr)
    stack.push_async_callback(billing_channel.close)
    stack.push_async_callback(storage_channel.close)
    billing = billing_pb2_grpc.BillingServiceStub(billing_channel)
    storage = storage_pb2_grpc.StorageServiceStub(storage_channel)
    # Closed before the channel and the pool they use (the stack unwinds in reverse).
    writer = RunWriter(pool)
    stack.push_async_callback(writer.close)
    reservations = batched_rpc(
        billing.ReserveMany,
        lambda requests: billing_pb2.ReserveManyRequest(requests=requests),
        lambda outcome: outcome.reservation,
        timeout=10,
    )
    stack.push_async_callback(reservations.close)
    creator = RunCreator(
        pool,
        billing,
        storage,
        # CreateRun claims a key before anything else (a replay touches no billing), so
        # no separate lock-free look is needed.
        PgIdempotencyStore(),
        PgRateLimiter(runs_config.rate_limits),
        writer,
        after_commit=relay.wake,
        reserve_batcher=reservations,
        webhook_policy=runs_config.webhooks.policy,
        max_timeout_seconds=runs_config.max_run_timeout_seconds,
        account_concurrency=runs_config.account_concurrency,
    )
    service = RunsService(
        pool,
        notifier,
        creator,
        OpenWaits(runs_config.max_open_waits_per_account),
        writer,
        after_commit=relay.wake,
    )
    await apply_workflow_dir(service, runs_config.workflows_dir)
    runs_pb2_grpc.add_RunsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        RunsServiceServicer(service, pool, RunWatcher(pool, nc, notifier)),
        server.server,
    )
    idempotency_pb2_grpc.add_IdempotencyServiceServicer_to_server(  # type: ignore[no-untyped-call]
        IdempotencyServicer(pool), server.server
    )

    async def database() -> bool:
        return await ping(pool)

    # NATS is deliberately not a readiness check: runs are accepted while it is down
    # (the outbox keeps them until it is back).
    return {"database": database}
