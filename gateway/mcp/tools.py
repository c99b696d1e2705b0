"""The MCP tools a key sees: one per workflow it may run, plus `get_run` and `submit_input`.

A workflow's tool is named by its slug (its id when the slug is not a valid tool name)
and takes the published endpoint's flat body (gateway.workflow_openapi.endpoint_schema:
`input_text` and every declared field at the top level), plus two call options,
`idempotency_key` and `wait_seconds`, unless a declared field has the name.
"""

import json
import re
from typing import Any

from mcp import types

from gateway.mcp.context import McpCaller
from gateway.routes.runs import caller
from gateway.workflow_openapi import endpoint_schema
from weft.runs.v1 import runs_pb2

GET_RUN = "get_run"
SUBMIT_INPUT = "submit_input"
RESERVED = frozenset({GET_RUN, SUBMIT_INPUT})
# How long a call waits for its run before answering with the run id (and status).
DEFAULT_WAIT_SECONDS = 45
MAX_WAIT_SECONDS = 300
# Workflows per tools/list page (the next page's cursor is the last workflow's id).
PAGE_SIZE = 50
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RUN_ID = {"type": "string", "pattern": "^run_", "description": "The run's id (run_...)."}


def wait_schema(default: int) -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_WAIT_SECONDS,
        "default": default,
        "description": "Seconds to wait for the run to finish or ask for review before "
        "answering with its id and status (then call get_run).",
    }


CALL_OPTIONS: dict[str, Any] = {
    "idempotency_key": {
        "type": "string",
        "minLength": 1,
        "maxLength": 256,
        "description": "Retrying with the same key and arguments answers the first run "
        "instead of starting another (kept 24 hours).",
    },
    "wait_seconds": wait_schema(DEFAULT_WAIT_SECONDS),
}


def tool_name(workflow: runs_pb2.Workflow) -> str:
    slug = workflow.slug
    return slug if _TOOL_NAME.match(slug) and slug not in RESERVED else workflow.id


def workflow_tool(workflow: runs_pb2.Workflow) -> types.Tool:
    fields: list[dict[str, Any]] = json.loads(workflow.fields_json or "[]")
    schema = endpoint_schema(fields)
    declared = {f["name"] for f in fields}
    for name, option in CALL_OPTIONS.items():
        if name not in declared:
            schema["properties"][name] = option
    description = workflow.description or workflow.name
    return types.Tool(
        name=tool_name(workflow),
        title=workflow.name,
        description=f"{description}\n\nRuns the Weft workflow {workflow.id}: answers its "
        "result and cost, or the review it waits for (answer with submit_input), or its "
        "run id when it takes longer than wait_seconds (then call get_run).",
        inputSchema=schema,
        annotations=types.ToolAnnotations(title=workflow.name, openWorldHint=True),
    )


FIXED_TOOLS = [
    types.Tool(
        name=GET_RUN,
        title="Get a run",
        description="A run's status, result and cost; waits up to wait_seconds for it to "
        "finish or ask for review.",
        inputSchema={
            "type": "object",
            "properties": {"run_id": _RUN_ID, "wait_seconds": wait_schema(30)},
            "required": ["run_id"],
            "additionalProperties": False,
        },
        annotations=types.ToolAnnotations(readOnlyHint=True, openWorldHint=False),
    ),
    types.Tool(
        name=SUBMIT_INPUT,
        title="Answer a run's review",
        description="Answers a run waiting for human review (status awaiting_input) with "
        "values for the fields of its human_input_request; the run resumes and this "
        "waits for it like a workflow tool does.",
        inputSchema={
            "type": "object",
            "properties": {
                "run_id": _RUN_ID,
                "values": {
                    "type": "object",
                    "description": "The requested fields' values, by name.",
                },
                "wait_seconds": wait_schema(DEFAULT_WAIT_SECONDS),
            },
            "required": ["run_id", "values"],
            "additionalProperties": False,
        },
        annotations=types.ToolAnnotations(destructiveHint=False, openWorldHint=True),
    ),
]


async def list_tools(who: McpCaller, cursor: str | None) -> types.ListToolsResult:
    """One page of the caller's tools: the fixed ones first (with workflow_runs:create),
    then the workflows it may list (with workflows:read, within its allowlist)."""
    tools: list[types.Tool] = list(FIXED_TOOLS) if who.runs and not cursor else []
    if not who.lists_workflows:
        return types.ListToolsResult(tools=tools)
    reply = await who.services.runs.ListWorkflows(
        runs_pb2.ListWorkflowsRequest(
            caller=caller(who.principal), limit=PAGE_SIZE, starting_after=cursor or ""
        ),
        timeout=10,
    )
    tools += [workflow_tool(w) for w in reply.workflows if not w.archived_at]
    next_cursor = reply.workflows[-1].id if reply.has_more and reply.workflows else None
    return types.ListToolsResult(tools=tools, nextCursor=next_cursor)


async def find_workflow(who: McpCaller, name: str) -> runs_pb2.Workflow:
    """The workflow a tool name stands for (404 NOT_FOUND, as REST answers, when unknown
    or outside the key's allowlist)."""
    request = runs_pb2.GetWorkflowRequest(caller=caller(who.principal))
    if name.startswith("wf_"):
        request.workflow_id = name
    else:
        request.slug = name
    return await who.services.runs.GetWorkflow(request, timeout=10)
