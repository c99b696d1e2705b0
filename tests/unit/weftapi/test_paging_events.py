"""Auto-paging lists (sync and async) and run events over SSE (sync and async),
including a dropped stream resumed with Last-Event-ID."""

import json
from typing import Any

import httpx
import pytest
from weftapi import NotFoundError, RunEvent

from tests.unit.weftapi.conftest import Api, error, run

IDS = [f"run_{i}" for i in range(5)]


def pages(request: httpx.Request) -> httpx.Response:
    """5 runs, `limit` per page, after `starting_after`."""
    limit = int(request.url.params.get("limit", "20"))
    after = request.url.params.get("starting_after")
    start = IDS.index(after) + 1 if after else 0
    chunk = IDS[start : start + limit]
    body = {"data": [run("completed", i) for i in chunk], "has_more": start + limit < len(IDS)}
    return httpx.Response(200, json=body)


def test_sync_list_iterates_every_page(api: Api) -> None:
    api.fallback = pages
    with api.client() as weft:
        page = weft.runs.list(limit=2, status="completed")
        assert [r.id for r in page.data] == IDS[:2] and page.has_more
        assert [r.id for r in page] == IDS
    afters = [r.url.params.get("starting_after") for r in api.seen]
    assert afters == [None, "run_1", "run_3"]
    assert all(r.url.params["status"] == "completed" for r in api.seen)


async def test_async_list_awaits_a_page_or_iterates_all(api: Api) -> None:
    api.fallback = pages
    async with api.async_client() as weft:
        first = await weft.runs.list(limit=3)
        assert [r.id for r in first.data] == IDS[:3] and first.has_more
        assert [r.id async for r in weft.runs.list(limit=2)] == IDS
        second = await first.next_page()
        assert second is not None and [r.id for r in second.data] == IDS[3:]
        assert await second.next_page() is None


def frame(seq: int, kind: str, stage: str | None = None, status: str = "running") -> str:
    data = {"id": f"evt_{seq}", "type": kind, "created_at": "t", "stage": stage,
            "data": run(status)}  # fmt: skip
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"


def sse(*frames: str) -> httpx.Response:
    body = ": keep-alive\n\n" + "".join(frames)
    return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, text=body)


def kinds(events: list[RunEvent]) -> list[tuple[str, Any]]:
    return [(e.type, e.stage) for e in events]


def test_sync_events_stream_until_the_terminal_event(api: Api) -> None:
    delta = 'event: stage.delta\ndata: {"type": "stage.delta", "stage": "a", "delta": "Hel"}\n\n'
    api.script = [
        sse(frame(1, "run.started"), frame(2, "stage.started", "a"), delta,
            frame(3, "stage.completed", "a"), frame(4, "run.completed", status="completed"),
            frame(5, "never.seen")),
    ]  # fmt: skip
    with api.client() as weft:
        events = list(weft.runs.events("run_1"))
    assert kinds(events) == [
        ("run.started", None),
        ("stage.started", "a"),
        ("stage.delta", "a"),
        ("stage.completed", "a"),
        ("run.completed", None),
    ]
    assert events[2].delta == "Hel" and events[1].data is not None
    assert events[-1].terminal and events[-1].data and events[-1].data.status == "completed"
    assert events[0].seq == "1" and events[0].id == "evt_1"
    assert api.seen[0].headers["Accept"] == "text/event-stream"


def test_a_dropped_stream_resumes_after_the_last_event(api: Api) -> None:
    api.script = [
        sse(frame(1, "run.started"), frame(2, "stage.started", "a")),  # ends early
        sse(frame(3, "run.completed", status="completed")),
    ]
    with api.client() as weft:
        events = list(weft.runs.events("run_1", last_event_id=None))
    assert [e.seq for e in events] == ["1", "2", "3"]
    assert "Last-Event-ID" not in api.seen[0].headers
    assert api.seen[1].headers["Last-Event-ID"] == "2"


async def test_async_events_and_refusals(api: Api) -> None:
    api.script = [
        error(503, "SERVICE_UNAVAILABLE"),
        sse(frame(1, "run.started"), frame(2, "run.failed", status="failed")),
        error(404, "NOT_FOUND"),
    ]
    async with api.async_client() as weft:
        events = [e async for e in weft.runs.events("run_1")]
        assert kinds(events) == [("run.started", None), ("run.failed", None)]
        with pytest.raises(NotFoundError):
            async for _ in weft.runs.events("run_x"):
                pass
