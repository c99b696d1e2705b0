"""GET /api/v1/workflow-runs/:id/events: a run's lifecycle as Server-Sent Events, with
the tokens of its LLM stages as they are generated (`stage.delta`, `id: <seq>.<n>`:
the n-th piece after event seq; `data: {type, stage, delta, index}`).

Each event: `id: <seq>`, `event: <type>`, `data: {id, type, created_at, stage, data}` with
`data` the run snapshot (with links) at that moment. Resumable with `Last-Event-ID`
(events after that seq are replayed, then live). The stream ends after a terminal event;
a comment line every KEEPALIVE_SECONDS keeps proxies from closing an idle stream. The
gateway holds no database access: RunsService.WatchRun does the replay and the waiting.
"""

import asyncio
import contextlib
import json
import logging
from typing import Any

import grpc
from aiohttp import web

from gateway.auth import RUNS_CREATE, require
from gateway.client_input import MAX_INT
from gateway.http import dumps
from gateway.keys import SERVICES
from gateway.routes.runs import caller, run_links
from weft.auth.v1 import auth_pb2
from weft.runs.v1 import runs_pb2
from weftcore.context import REQUEST_ID_HEADER, request_id_var
from weftcore.errors import InvalidArgument
from weftcore.events import STAGE_DELTA

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
LAST_EVENT_ID = "Last-Event-ID"


def last_event_id(request: web.Request) -> tuple[int, int]:
    """Where to resume (header, or `?last_event_id=` for clients without headers, e.g.
    EventSource on first connect): `<seq>` after an event, `<seq>.<n>` after a token
    (`stage.delta`); (0, 0) when absent."""
    raw = request.headers.get(LAST_EVENT_ID) or request.query.get("last_event_id") or ""
    if not raw.strip():
        return 0, 0
    seq_text, _, n_text = raw.strip().partition(".")
    try:
        seq, n = int(seq_text), int(n_text or "0")
    except ValueError:
        seq = n = -1
    if not (0 <= seq <= MAX_INT and 0 <= n <= MAX_INT):
        raise InvalidArgument(
            "Last-Event-ID must be an event id (a number, or two joined by a dot).",
            param=LAST_EVENT_ID,
        )
    return seq, n


def sse_frame(request: web.Request, event: runs_pb2.RunEvent) -> bytes:
    """One SSE message for a run event."""
    if event.type == STAGE_DELTA:
        piece = {
            "type": event.type,
            "stage": event.stage,
            "delta": event.delta,
            "index": event.delta_index,
        }
        return (
            f"id: {event.seq}.{event.delta_index}\nevent: {event.type}\ndata: {dumps(piece)}\n\n"
        ).encode()
    snapshot: dict[str, Any] = json.loads(event.run.snapshot_json)
    snapshot["links"] = run_links(request, event.run.id, event.run.workflow_id)
    data = {
        "id": event.id,
        "type": event.type,
        "created_at": event.created_at,
        "stage": event.stage or None,
        "data": snapshot,
    }
    return f"id: {event.seq}\nevent: {event.type}\ndata: {dumps(data)}\n\n".encode()


async def stream_events(request: web.Request) -> web.StreamResponse:
    principal = await require(request, RUNS_CREATE)
    return await stream_run_events(request, principal, request.match_info["run_id"])


async def stream_run_events(
    request: web.Request, principal: auth_pb2.Principal, run_id: str
) -> web.StreamResponse:
    """The run's events as SSE for `principal` (the API's key, or the console's person)."""
    after, after_delta = last_event_id(request)
    runs = request.app[SERVICES].runs
    who = caller(principal)
    call = runs.WatchRun(
        runs_pb2.WatchRunRequest(
            caller=who, run_id=run_id, after_seq=after, after_delta=after_delta
        )
    )
    # A refusal (404, 429 over the account's open streams) must be known before the 200
    # headers go out: the service sends its headers only once it accepted the stream.
    try:
        await call.initial_metadata()
        await call.wait_for_connection()  # raises the call's error if it already ended
    except BaseException:
        call.cancel()
        raise
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            REQUEST_ID_HEADER: request_id_var.get(),
        }
    )
    await response.prepare(request)
    queue: asyncio.Queue[runs_pb2.RunEvent | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in call:
                await queue.put(event)
        finally:
            await queue.put(None)

    reader = asyncio.create_task(pump(), name=f"sse-{run_id}")
    try:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if event is None:
                break
            await response.write(sse_frame(request, event))
    except ConnectionResetError:
        # The client went away (seen on the next write, at the latest the keep-alive).
        call.cancel()
        return response
    except asyncio.CancelledError:
        call.cancel()
        raise
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.RpcError, Exception):
            await reader
    # The watch ended: after a terminal event, or an error after the headers went out
    # (then the client reconnects with Last-Event-ID).
    if reader.done() and not reader.cancelled() and reader.exception() is not None:
        log.warning("event stream ended early", extra={"run_id": run_id})
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def setup(app: web.Application) -> None:
    """Registers GET /api/v1/workflow-runs/{run_id}/events."""
    app.router.add_get("/api/v1/workflow-runs/{run_id}/events", stream_events)
