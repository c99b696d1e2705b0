"""The MCP server (the official SDK's low-level `Server`): tool listing and tool calls.

Stateless: each /mcp request carries its key and is answered on its own, so any gateway
process can serve any request and nothing is kept between them. A tool call's progress
goes out as notifications on the call's own SSE response.
"""

import importlib.metadata
import json
from typing import Any

import grpc
from mcp import types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import McpError

from gateway.auth import RUNS_CREATE
from gateway.http import error_body
from gateway.mcp import lifecycle, tools
from gateway.mcp.context import McpCaller, caller_of
from gateway.mcp.lifecycle import Progress
from weftcore.context import request_id_var
from weftcore.errors import WeftError, from_rpc_error

INSTRUCTIONS = (
    "Each tool but get_run and submit_input runs one Weft workflow: its arguments are "
    "input_text and the workflow's fields. A call answers the run's result and cost_cents, "
    "or its human_input_request when it waits for review (answer it with submit_input), or "
    "its run_id when it takes longer than wait_seconds (then call get_run)."
)


def _version() -> str:
    try:
        return importlib.metadata.version("weft")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _answer(data: dict[str, Any], *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(data, indent=2))],
        structuredContent=data,
        isError=error,
    )


def error_result(err: WeftError) -> types.CallToolResult:
    """The REST error envelope, as a tool error the model can read."""
    return _answer(error_body(err), error=True)


async def call_tool(
    who: McpCaller, name: str, args: dict[str, Any], progress: Progress
) -> types.CallToolResult:
    """Runs a tool; the run's outcome (a failed or canceled run is a tool error)."""
    who.require(RUNS_CREATE)
    now = None
    if name == tools.GET_RUN:
        wait = lifecycle.wait_seconds(args, 30, tools.MAX_WAIT_SECONDS)
        now = await lifecycle.get_run(who, str(args.get("run_id") or ""))
        run_id = now.id
    elif name == tools.SUBMIT_INPUT:
        wait = lifecycle.wait_seconds(args, tools.DEFAULT_WAIT_SECONDS, tools.MAX_WAIT_SECONDS)
        now = await lifecycle.submit_input(who, str(args.get("run_id") or ""), args.get("values"))
        run_id = now.id
    else:
        workflow = await tools.find_workflow(who, name)
        wait = lifecycle.wait_seconds(args, tools.DEFAULT_WAIT_SECONDS, tools.MAX_WAIT_SECONDS)
        run_id = (await lifecycle.start_run(who, name, workflow, args)).id
        await progress(f"run.created {run_id}")
    run = await lifecycle.follow(who, run_id, wait, progress, now)
    outcome = lifecycle.outcome(who, run)
    return _answer(outcome, error=outcome["status"] in ("failed", "canceled"))


def build_server() -> Server[Any, Any]:
    """The server with its two handlers, registered directly: the SDK's decorators keep
    one process-wide cache of tools, and every key here sees its own."""
    server: Server[Any, Any] = Server("weft", version=_version(), instructions=INSTRUCTIONS)

    def who() -> McpCaller:
        request = server.request_context.request
        scope: dict[str, Any] = getattr(request, "scope", {})
        caller = caller_of(scope)
        request_id_var.set(caller.request_id)  # for the log lines of this call
        return caller

    async def list_tools(request: types.ListToolsRequest) -> types.ServerResult:
        cursor = request.params.cursor if request.params else None
        try:
            return types.ServerResult(await tools.list_tools(who(), cursor))
        except (WeftError, grpc.RpcError) as exc:
            err = from_rpc_error(exc) if isinstance(exc, grpc.RpcError) else exc
            error = types.ErrorData(code=types.INTERNAL_ERROR, message=err.message)
            raise McpError(error) from None

    async def call(request: types.CallToolRequest) -> types.ServerResult:
        caller = who()
        ctx = server.request_context
        token = ctx.meta.progressToken if ctx.meta else None
        count = 0

        async def progress(message: str) -> None:
            nonlocal count
            if token is None:
                return
            count += 1
            await ctx.session.send_progress_notification(
                token, count, None, message, related_request_id=str(ctx.request_id)
            )

        name, arguments = request.params.name, request.params.arguments or {}
        try:
            result = await call_tool(caller, name, arguments, progress)
        except WeftError as err:
            result = error_result(err)
        except grpc.RpcError as exc:
            result = error_result(from_rpc_error(exc))
        return types.ServerResult(result)

    server.request_handlers[types.ListToolsRequest] = list_tools
    server.request_handlers[types.CallToolRequest] = call
    return server
