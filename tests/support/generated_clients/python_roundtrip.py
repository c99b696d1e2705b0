"""Run by tests/integration/test_openapi_generators.py beside `weft_api`, the client that
openapi-python-client generated from the served document. Every call goes to the live
stack and every answer must parse into its typed model (never None, never a dict).

Usage: python python_roundtrip.py BASE_URL WORKFLOW_ID REVIEW_WORKFLOW_ID (key in
WEFT_API_KEY). Prints a JSON summary for the test to check."""

import json
import os
import sys
from typing import Any

from weft_api import AuthenticatedClient
from weft_api.api.account import get_me
from weft_api.api.runs import (
    cancel_run,
    create_run,
    get_run,
    list_runs,
    submit_run_input,
)
from weft_api.api.workflows import get_workflow, list_workflows
from weft_api.models import (
    CostItem,
    CreatedRunEnvelope,
    CreateRunRequest,
    CreateRunRequestParams,
    Error,
    ErrorCode,
    Field,
    FieldType,
    HumanInputRequest,
    MeEnvelope,
    Plan,
    Run,
    RunAwaitingInputEvent,
    RunCanceledEvent,
    RunCompletedEvent,
    RunCreatedEvent,
    RunEnvelope,
    RunFailedEvent,
    RunList,
    RunStartedEvent,
    RunStatus,
    StageCompletedEvent,
    StageStartedEvent,
    SubmitInputRequest,
    SubmitInputRequestValues,
    Workflow,
    WorkflowEnvelope,
    WorkflowList,
)

EVENT_MODELS: dict[str, Any] = {
    "run.created": RunCreatedEvent,
    "run.started": RunStartedEvent,
    "stage.started": StageStartedEvent,
    "stage.completed": StageCompletedEvent,
    "run.awaiting_input": RunAwaitingInputEvent,
    "run.completed": RunCompletedEvent,
    "run.failed": RunFailedEvent,
    "run.canceled": RunCanceledEvent,
}
TERMINAL = {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED}


def settle(client: Any, run_id: str, until: set[Any]) -> Any:
    """The run once its status is in `until` (long-polls; no sleeps)."""
    while True:
        envelope = get_run.sync(run_id, client=client, wait=30)
        assert isinstance(envelope, RunEnvelope), envelope
        if envelope.data.status in until:
            return envelope.data


def events(client: Any, run_id: str) -> list[Any]:
    """The run's SSE stream (openapi-python-client reads no streams: plain httpx here),
    each frame's data parsed by its generated model."""
    response = client.get_httpx_client().get(f"/api/v1/workflow-runs/{run_id}/events")
    assert response.status_code == 200, response.text
    parsed = []
    for frame in response.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
        if "data" in fields:
            data = json.loads(fields["data"])
            assert fields["event"] == data["type"]
            parsed.append(EVENT_MODELS[data["type"]].from_dict(data))
    return parsed


def error(response: Any, status: int) -> Any:
    assert response.status_code == status, response.content
    assert isinstance(response.parsed, Error), response.parsed
    assert response.parsed.error.request_id == response.headers["X-Request-Id"]
    return response.parsed.error.code


def main(base_url: str, workflow_id: str, review_id: str) -> dict[str, Any]:
    client = AuthenticatedClient(
        base_url=base_url, token=os.environ["WEFT_API_KEY"], raise_on_unexpected_status=True
    )
    me = get_me.sync(client=client)
    assert isinstance(me, MeEnvelope) and me.data.plan is Plan.PRO, me

    page = list_workflows.sync(client=client, limit=100)
    assert isinstance(page, WorkflowList), page
    assert workflow_id in [w.id for w in page.data]
    workflow = get_workflow.sync(workflow_id, client=client)
    assert isinstance(workflow, WorkflowEnvelope) and isinstance(workflow.data, Workflow)
    fields = {f.name: f for f in workflow.data.fields}
    assert all(isinstance(f, Field) for f in fields.values())
    assert fields["tone"].type_ is FieldType.SELECT
    assert fields["tone"].constraints.options == ["formal", "casual"]

    created = create_run.sync_detailed(
        workflow_id,
        client=client,
        body=CreateRunRequest(
            input_text="from a generated client",
            params=CreateRunRequestParams.from_dict({"count": 3, "tone": "casual"}),
        ),
        idempotency_key="generated-python-1",
    )
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, CreatedRunEnvelope), created.parsed
    run = settle(client, created.parsed.data.id, TERMINAL)
    assert isinstance(run, Run) and run.status is RunStatus.COMPLETED, run
    assert all(isinstance(c, CostItem) for c in run.cost_breakdown)
    listed = list_runs.sync(client=client, workflow_id=workflow_id)
    assert isinstance(listed, RunList) and [r.id for r in listed.data] == [run.id]
    streamed = events(client, run.id)

    review = create_run.sync(review_id, client=client, body=CreateRunRequest(input_text="ok?"))
    assert isinstance(review, CreatedRunEnvelope), review
    waiting = settle(client, review.data.id, {RunStatus.AWAITING_INPUT, *TERMINAL})
    assert waiting.status is RunStatus.AWAITING_INPUT, waiting
    request = waiting.human_input_request
    assert isinstance(request, HumanInputRequest), request
    assert [(f.name, f.type_) for f in request.fields] == [("approved", FieldType.BOOLEAN)]
    answered = submit_run_input.sync(
        review.data.id,
        client=client,
        body=SubmitInputRequest(values=SubmitInputRequestValues.from_dict({"approved": True})),
    )
    assert isinstance(answered, RunEnvelope), answered
    reviewed = settle(client, review.data.id, TERMINAL)

    codes = [
        error(get_run.sync_detailed("run_doesnotexist", client=client), 404),
        error(cancel_run.sync_detailed(run.id, client=client), 409),
        error(
            submit_run_input.sync_detailed(
                run.id,
                client=client,
                body=SubmitInputRequest(values=SubmitInputRequestValues.from_dict({})),
            ),
            409,
        ),
    ]
    assert all(isinstance(c, ErrorCode) for c in codes)
    return {
        "result": run.result,
        "events": [type(e).__name__ for e in streamed],
        "last_event_status": streamed[-1].data.status.value,
        "review_status": reviewed.status.value,
        "review_events": [type(e).__name__ for e in events(client, review.data.id)],
        "error_codes": [c.value for c in codes],
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
