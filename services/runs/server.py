"""gRPC surface of the runs service: wiring and the servicer (gRPC <-> domain)."""

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg

from services.runs import convert
from services.runs.create import (
    CreateRunInput,
    IdempotencyRequest,
    RunCreator,
)
from services.runs.group_commit import CreationBatcher
from services.runs.integrations import idempotency_rpc, make_idempotency, make_rate_limiter
from services.runs.notify import Notifier
from services.runs.open_waits import OpenWaits
from services.runs.outbox import OutboxRelay
from services.runs.service import RunsService
from services.runs.watch import RunWatcher
from services.runs.webhooks import (
    WebhookConfig,
    WebhookDispatcher,
    get_or_create_secret,
    list_deliveries,
)
from weft.billing.v1 import billing_pb2, billing_pb2_grpc
from weft.runs.v1 import runs_pb2 as pb
from weft.runs.v1 import runs_pb2_grpc
from weft.storage.v1 import storage_pb2_grpc
from weftcore.config import ServiceConfig, env_int, env_str
from weftcore.db import create_pool, ping
from weftcore.errors import InvalidArgument
from weftcore.grpc_client import batched_rpc, open_channel
from weftcore.grpc_server import GrpcServer, batch_item
from weftcore.ids import iso
from weftcore.nats import connect, ensure_streams
from weftcore.service import Check

GRPC_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RunsService"].full_name
# The repository's example workflows; WEFT_WORKFLOWS_DIR="" turns loading off.
DEFAULT_WORKFLOWS_DIR = Path(__file__).resolve().parents[2] / "workflows"
log = logging.getLogger(__name__)

Ctx = Any


def _json_arg(raw: str, param: str, default: Any) -> Any:
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidArgument(f"{param} is not valid JSON.", param=param) from None


def _idem(msg: pb.Idempotency) -> IdempotencyRequest | None:
    if not msg.key:
        return None
    return IdempotencyRequest(msg.key, msg.method, msg.path, msg.request_hash)


class RunsServiceServicer(runs_pb2_grpc.RunsServiceServicer):
    """Methods not overridden here answer UNIMPLEMENTED."""

    def __init__(
        self, service: RunsService, pool: asyncpg.Pool, watcher: RunWatcher | None = None
    ) -> None:
        self.service = service
        self.pool = pool
        self.watcher = watcher or RunWatcher(pool, None)

    async def ApplyWorkflow(self, request: pb.ApplyWorkflowRequest, context: Ctx) -> pb.Workflow:
        applied = await self.service.apply_workflow(request.definition)
        return convert.workflow(applied.row, changed=applied.changed)

    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: Ctx
    ) -> pb.ListWorkflowsResponse:
        caller = convert.caller(request.caller) if request.HasField("caller") else None
        rows, more = await self.service.list_workflows(
            caller, request.limit, request.starting_after
        )
        return pb.ListWorkflowsResponse(
            workflows=[convert.workflow(r) for r in rows], has_more=more
        )

    async def GetWorkflow(self, request: pb.GetWorkflowRequest, context: Ctx) -> pb.Workflow:
        caller = convert.caller(request.caller) if request.HasField("caller") else None
        row = await self.service.get_workflow(caller, request.workflow_id or request.slug)
        return convert.workflow(row)

    async def CreateRun(self, request: pb.CreateRunRequest, context: Ctx) -> pb.CreateRunResponse:
        return await self._create_run(request)

    async def CreateRuns(
        self, request: pb.CreateRunsRequest, context: Ctx
    ) -> pb.CreateRunsResponse:
        # Concurrently: the creations then share the billing and insert batches.
        outcomes = await asyncio.gather(*(self._create_outcome(r) for r in request.requests))
        return pb.CreateRunsResponse(outcomes=outcomes)

    async def _create_outcome(self, request: pb.CreateRunRequest) -> pb.CreateRunOutcome:
        answer, error = await batch_item(request.request_id, self._create_run(request))
        return pb.CreateRunOutcome(response=answer, error=error)

    async def _create_run(self, request: pb.CreateRunRequest) -> pb.CreateRunResponse:
        inp = CreateRunInput(
            workflow_id=request.workflow_id,
            input_text=request.input_text,
            params=_json_arg(request.params_json, "params", {}),
            attachment_ids=list(request.attachment_ids),
            webhook_url=request.webhook_url,
            idempotency=_idem(request.idempotency),
        )
        out = await self.service.create_run(convert.caller(request.caller), inp)
        response = pb.CreateRunResponse(
            http_status=out.http_status, body_json=out.body_json, replayed=out.replayed
        )
        if out.rate_limit is not None:
            response.rate_limit.CopyFrom(
                pb.RateLimitState(
                    limit=out.rate_limit.limit,
                    remaining=out.rate_limit.remaining,
                    reset_seconds=out.rate_limit.reset_seconds,
                )
            )
        return response

    async def GetRun(self, request: pb.GetRunRequest, context: Ctx) -> pb.Run:
        view = await self.service.get_run(
            convert.caller(request.caller),
            request.run_id,
            request.wait_seconds,
            request.known_status,
        )
        return convert.run(view)

    async def ListRuns(self, request: pb.ListRunsRequest, context: Ctx) -> pb.ListRunsResponse:
        views, more = await self.service.list_runs(
            convert.caller(request.caller),
            request.workflow_id,
            request.status,
            request.limit,
            request.starting_after,
        )
        return pb.ListRunsResponse(runs=[convert.run(v) for v in views], has_more=more)

    async def CancelRun(self, request: pb.CancelRunRequest, context: Ctx) -> pb.Run:
        view = await self.service.cancel_run(convert.caller(request.caller), request.run_id)
        return convert.run(view)

    async def SubmitInput(self, request: pb.SubmitInputRequest, context: Ctx) -> pb.Run:
        values = _json_arg(request.values_json, "values", None)
        view = await self.service.submit_input(
            convert.caller(request.caller), request.run_id, values
        )
        return convert.run(view)

    async def WatchRun(
        self, request: pb.WatchRunRequest, context: Ctx
    ) -> AsyncIterator[pb.RunEvent]:
        caller = convert.caller(request.caller)
        await self.watcher.check_visible(caller, request.run_id)
        with self.service.open_waits.hold(caller.account_id):
            # Accepted: the gateway waits for these headers before answering 200.
            await context.send_initial_metadata(())
            async for row in self.watcher.events(request.run_id, request.after_seq):
                yield convert_event(row)

    async def ListWebhookDeliveries(
        self, request: pb.ListWebhookDeliveriesRequest, context: Ctx
    ) -> pb.ListWebhookDeliveriesResponse:
        found = await list_deliveries(self.pool, request.run_id)
        return pb.ListWebhookDeliveriesResponse(
            deliveries=[convert_delivery(row, attempts) for row, attempts in found]
        )

    async def GetWebhookSecret(
        self, request: pb.GetWebhookSecretRequest, context: Ctx
    ) -> pb.WebhookSecret:
        if not request.account_id:
            raise InvalidArgument("account_id is required.", param="account_id")
        row = await get_or_create_secret(self.pool, request.account_id)
        return pb.WebhookSecret(
            account_id=row["account_id"], secret=row["secret"], created_at=iso(row["created_at"])
        )

    async def BeginIdempotent(
        self, request: pb.BeginIdempotentRequest, context: Ctx
    ) -> pb.BeginIdempotentResponse:
        return await idempotency_rpc.begin(self.pool, request)

    async def CompleteIdempotent(
        self, request: pb.CompleteIdempotentRequest, context: Ctx
    ) -> pb.CompleteIdempotentResponse:
        return await idempotency_rpc.complete(self.pool, request)


def convert_event(row: asyncpg.Record) -> pb.RunEvent:
    """A run_events row as the proto (the run as it was at that event)."""
    payload = row["payload"]
    snapshot = payload["run"]
    return pb.RunEvent(
        id=row["event_id"],
        seq=row["seq"],
        type=row["type"],
        stage=row["stage"] or "",
        created_at=payload["created_at"],
        run=pb.Run(
            id=snapshot["id"],
            workflow_id=snapshot["workflow_id"],
            status=snapshot["status"],
            snapshot_json=json.dumps(snapshot, separators=(",", ":"), ensure_ascii=False),
        ),
    )


def convert_delivery(row: asyncpg.Record, attempts: list[asyncpg.Record]) -> pb.WebhookDelivery:
    return pb.WebhookDelivery(
        id=row["id"],
        run_id=row["run_id"],
        event_type=row["event_type"],
        url=row["url"],
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        last_status_code=row["last_status_code"],
        next_attempt_at=iso(row["next_attempt_at"]) if row["status"] == "pending" else "",
        created_at=iso(row["created_at"]),
        delivered_at=iso(row["delivered_at"]),
        attempt_log=[
            pb.WebhookAttempt(
                attempt=a["attempt"],
                status_code=a["status_code"],
                error=a["error"],
                duration_ms=a["duration_ms"],
                created_at=iso(a["created_at"]),
            )
            for a in attempts
        ],
    )


async def apply_workflow_dir(service: RunsService, directory: str) -> None:
    """Apply every definition in `directory` (idempotent: unchanged files keep their
    version). A bad file is logged, never fatal: the service still has to start."""
    if not directory or not Path(directory).is_dir():
        return
    for path in sorted(Path(directory).iterdir()):
        if path.suffix not in (".yaml", ".yml", ".json"):
            continue
        try:
            applied = await service.apply_workflow(path.read_text())
        except Exception as exc:
            log.error("workflow not applied", extra={"file": str(path), "error": str(exc)})
            continue
        log.info(
            "workflow applied",
            extra={
                "file": path.name,
                "workflow_id": applied.row["id"],
                "version": applied.row["current_version"],
                "changed": applied.changed,
            },
        )


async def _connect_nats(url: str, attempts: int = 60) -> Any:
    """Connect, retrying for a while: NATS restarting next to us must not stop a start.
    (Once connected, the client reconnects by itself and the outbox keeps new runs.)"""
    for attempt in range(attempts):
        try:
            return await connect(url, "weft-runs")
        except Exception as exc:
            if attempt == attempts - 1:
                raise
            log.warning("nats not reachable yet", extra={"error": str(exc)})
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def wire(
    config: ServiceConfig, server: GrpcServer, stack: AsyncExitStack
) -> dict[str, Check]:
    pool = await create_pool(config.database_url, "runs", min_size=4, max_size=20, light_reset=True)
    stack.push_async_callback(pool.close)
    nc = await _connect_nats(config.nats_url)
    stack.push_async_callback(nc.drain)
    js = nc.jetstream()
    await ensure_streams(js)

    relay = OutboxRelay(pool, nc)
    webhook_config = WebhookConfig.from_env()
    webhooks = WebhookDispatcher(pool, webhook_config)

    notifier = Notifier(config.database_url, "runs", relay.wake, webhooks.wake)
    relay.start()
    notifier.start()
    webhooks.start()
    stack.push_async_callback(relay.close)
    stack.push_async_callback(notifier.close)
    stack.push_async_callback(webhooks.close)

    billing_channel = open_channel(env_str("WEFT_BILLING_ADDR", "127.0.0.1:7104"))
    storage_channel = open_channel(env_str("WEFT_STORAGE_ADDR", "127.0.0.1:7103"))
    stack.push_async_callback(billing_channel.close)
    stack.push_async_callback(storage_channel.close)
    billing = billing_pb2_grpc.BillingServiceStub(billing_channel)
    storage = storage_pb2_grpc.StorageServiceStub(storage_channel)
    creator = RunCreator(
        pool,
        billing,
        storage,
        make_idempotency(),
        make_rate_limiter(),
        after_commit=relay.wake,
        batcher=CreationBatcher(pool),
        reserve_batcher=batched_rpc(
            billing.ReserveMany,
            lambda requests: billing_pb2.ReserveManyRequest(requests=requests),
            lambda outcome: outcome.reservation,
            timeout=10,
        ),
        webhook_policy=webhook_config.policy,
    )
    service = RunsService(
        pool, notifier, creator, OpenWaits(env_int("WEFT_MAX_OPEN_WAITS_PER_ACCOUNT", 100))
    )
    await apply_workflow_dir(
        service, os.environ.get("WEFT_WORKFLOWS_DIR", str(DEFAULT_WORKFLOWS_DIR))
    )
    runs_pb2_grpc.add_RunsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        RunsServiceServicer(service, pool, RunWatcher(pool, nc, notifier)),
        server.server,
    )

    async def database() -> bool:
        return await ping(pool)

    # NATS is deliberately not a readiness check: runs are accepted while it is down
    # (the outbox keeps them until it is back).
    return {"database": database}
