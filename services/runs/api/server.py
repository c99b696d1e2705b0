"""The gRPC surface of the runs service: RunsService methods <-> domain calls
(messages converted by convert.py; wiring is in services/runs/wiring.py)."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from services.runs.api import convert
from services.runs.delivery.webhooks import get_or_create_secret, list_deliveries
from services.runs.domain.service import RunsService, check_limit
from services.runs.domain.token_feed import TokenDelta
from services.runs.domain.watch import RunWatcher
from weft.runs.v1 import runs_pb2 as pb
from weft.runs.v1 import runs_pb2_grpc
from weftcore.errors import InvalidArgument
from weftcore.grpc_server import batch_item
from weftcore.ids import iso

GRPC_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RunsService"].full_name

Ctx = Any


class RunsServiceServicer(runs_pb2_grpc.RunsServiceServicer):
    """Methods not overridden here answer UNIMPLEMENTED."""

    def __init__(
        self, service: RunsService, pool: asyncpg.Pool, watcher: RunWatcher | None = None
    ) -> None:
        self.service = service
        self.pool = pool
        self.watcher = watcher or RunWatcher(pool, None)

    # ---- workflows (domain/authoring.py) ----------------------------------------------

    async def ApplyWorkflow(self, request: pb.ApplyWorkflowRequest, context: Ctx) -> pb.Workflow:
        applied = await self.service.workflows.apply(
            request.definition, request.owner_user_id, request.owner_team_id
        )
        return convert.workflow(applied.row, changed=applied.changed)

    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: Ctx
    ) -> pb.ListWorkflowsResponse:
        caller = convert.caller(request.caller) if request.HasField("caller") else None
        rows, more = await self.service.workflows.list_visible(
            caller, check_limit(request.limit), request.starting_after
        )
        return pb.ListWorkflowsResponse(
            workflows=[convert.workflow(r) for r in rows], has_more=more
        )

    async def GetWorkflow(self, request: pb.GetWorkflowRequest, context: Ctx) -> pb.Workflow:
        caller = convert.caller(request.caller) if request.HasField("caller") else None
        row = await self.service.workflows.get(caller, request.workflow_id or request.slug)
        return convert.workflow(row)

    async def GetEndpoint(self, request: pb.GetEndpointRequest, context: Ctx) -> pb.Endpoint:
        return convert.endpoint(await self.service.workflows.endpoint(request.slug))

    async def CreateWorkflow(self, request: pb.CreateWorkflowRequest, context: Ctx) -> pb.Workflow:
        caller = convert.caller(request.caller)
        return convert.workflow(await self.service.workflows.create(caller, request.definition))

    async def EditWorkflow(self, request: pb.EditWorkflowRequest, context: Ctx) -> pb.Workflow:
        row = await self.service.workflows.edit(
            convert.caller(request.caller), request.workflow_id, request.definition, request.merge
        )
        return convert.workflow(row)

    async def PublishWorkflow(
        self, request: pb.PublishWorkflowRequest, context: Ctx
    ) -> pb.WorkflowVersion:
        version = await self.service.workflows.publish(
            convert.caller(request.caller), request.workflow_id, request.note
        )
        return convert.workflow_version(version)

    async def ListWorkflowVersions(
        self, request: pb.ListWorkflowVersionsRequest, context: Ctx
    ) -> pb.ListWorkflowVersionsResponse:
        rows = await self.service.workflows.versions(
            convert.caller(request.caller), request.workflow_id
        )
        return pb.ListWorkflowVersionsResponse(versions=[convert.workflow_version(r) for r in rows])

    async def GetWorkflowVersion(
        self, request: pb.GetWorkflowVersionRequest, context: Ctx
    ) -> pb.WorkflowVersion:
        row = await self.service.workflows.version(
            convert.caller(request.caller), request.workflow_id, request.version
        )
        return convert.workflow_version(row)

    async def ArchiveWorkflow(
        self, request: pb.ArchiveWorkflowRequest, context: Ctx
    ) -> pb.Workflow:
        caller = convert.caller(request.caller) if request.HasField("caller") else None
        return convert.workflow(await self.service.workflows.archive(caller, request.workflow_id))

    async def DeleteWorkflow(
        self, request: pb.DeleteWorkflowRequest, context: Ctx
    ) -> pb.DeleteWorkflowResponse:
        await self.service.workflows.delete(request.workflow_id)
        return pb.DeleteWorkflowResponse()

    async def DuplicateWorkflow(
        self, request: pb.DuplicateWorkflowRequest, context: Ctx
    ) -> pb.Workflow:
        row = await self.service.workflows.duplicate(
            convert.caller(request.caller), request.workflow_id, request.slug, request.name
        )
        return convert.workflow(row)

    # ---- runs ------------------------------------------------------------------------

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
        out = await self.service.create_run(
            convert.caller(request.caller), convert.create_run_input(request)
        )
        return convert.create_run_response(out)

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
        values = convert.json_arg(request.values_json, "values", None)
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
            async for item in self.watcher.events(
                request.run_id, request.after_seq, request.after_delta
            ):
                if isinstance(item, TokenDelta):
                    yield convert.token_event(item)
                else:
                    yield convert.run_event(item)

    async def ListWebhookDeliveries(
        self, request: pb.ListWebhookDeliveriesRequest, context: Ctx
    ) -> pb.ListWebhookDeliveriesResponse:
        found = await list_deliveries(self.pool, request.run_id)
        return pb.ListWebhookDeliveriesResponse(
            deliveries=[convert.webhook_delivery(row, attempts) for row, attempts in found]
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
