"""GET /api/v1/workflow-runs/:id/events (SSE) through the real stack: every stage, the
end after the terminal event, live events while waiting, Last-Event-ID resume, owner."""

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.runs import (
    Account,
    apply_workflow,
    create_account,
    create_run,
    post_run_action,
)

pytestmark = pytest.mark.timeout(120)

TWO_STAGES = [
    {"id": "first", "type": "template", "template": "1: {{ input_text }}"},
    {"id": "second", "type": "template", "template": "2: {{ stages.first }}"},
]


async def read_events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """Parses an SSE body into {id, event, data, comment} dicts until the stream ends."""
    frame: dict[str, Any] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if frame:
                yield frame
            frame = {}
        elif line.startswith(":"):
            frame["comment"] = line[1:].strip()
        else:
            name, _, value = line.partition(":")
            frame[name] = value.removeprefix(" ")
    if frame:
        yield frame


def events_url(stack: Any, run_id: str) -> str:
    return f"{stack.base_url}/api/v1/workflow-runs/{run_id}/events"


async def collect(
    http: aiohttp.ClientSession, stack: Any, account: Account, run_id: str, **headers: str
) -> list[dict[str, Any]]:
    async with http.get(
        events_url(stack, run_id), headers={**account.headers, **headers}
    ) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return [f async for f in read_events(response) if "event" in f]


async def test_stream_shows_every_stage_and_ends_after_the_terminal_event(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(stack, TWO_STAGES)
    run = await create_run(http, stack, account, workflow_id, "go")
    frames = await collect(http, stack, account, run["id"])  # returns only when it ends
    kinds = [(f["event"], json.loads(f["data"])["stage"]) for f in frames]
    assert kinds == [
        ("run.created", None),
        ("run.started", None),
        ("stage.started", "first"),
        ("stage.completed", "first"),
        ("stage.started", "second"),
        ("stage.completed", "second"),
        ("run.completed", None),
    ]
    seqs = [int(f["id"]) for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    last = json.loads(frames[-1]["data"])
    assert last["id"].startswith("evt_") and last["type"] == "run.completed"
    assert last["data"]["id"] == run["id"] and last["data"]["status"] == "completed"
    assert last["data"]["result"] == "2: 1: go"
    assert last["data"]["links"]["self"].endswith(f"/api/v1/workflow-runs/{run['id']}")
    started = json.loads(frames[2]["data"])
    assert started["data"]["status"] == "running"  # the snapshot at that moment


async def test_last_event_id_resumes_after_that_event(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(stack, TWO_STAGES)
    run = await create_run(http, stack, account, workflow_id, "resume")
    everything = await collect(http, stack, account, run["id"])
    cut = int(everything[3]["id"])
    rest = await collect(http, stack, account, run["id"], **{"Last-Event-ID": str(cut)})
    assert [f["id"] for f in rest] == [f["id"] for f in everything[4:]]
    assert rest[-1]["event"] == "run.completed"
    # Resuming after the terminal event: nothing more, and the stream ends.
    after_end = await collect(
        http, stack, account, run["id"], **{"Last-Event-ID": everything[-1]["id"]}
    )
    assert after_end == []


async def test_live_events_while_awaiting_input_then_completion(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(
        stack,
        [
            {"id": "draft", "type": "template", "template": "draft {{ input_text }}"},
            {
                "id": "review",
                "type": "human_review",
                "prompt": "ok?",
                "fields": [{"name": "ok", "type": "boolean", "required": True}],
            },
            {"id": "final", "type": "template", "template": "{{ stages.review.ok }}"},
        ],
    )
    run = await create_run(http, stack, account, workflow_id, "live")
    seen: list[tuple[str, str | None]] = []
    async with http.get(events_url(stack, run["id"]), headers=account.headers) as response:
        assert response.status == 200
        async for frame in read_events(response):
            if "event" not in frame:
                continue
            seen.append((frame["event"], json.loads(frame["data"])["stage"]))
            if frame["event"] == "run.awaiting_input":
                # The stream stays open; the answer's events can only arrive live.
                status, body = await post_run_action(
                    http, stack, account, run["id"], "input", {"values": {"ok": True}}
                )
                assert status == 200, body
    waiting = seen.index(("run.awaiting_input", "review"))
    after = seen[waiting + 1 :]
    assert ("stage.started", "final") in after and ("stage.completed", "final") in after
    assert seen[-1] == ("run.completed", None)


async def test_only_the_owner_sees_the_stream(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(stack, TWO_STAGES)
    run = await create_run(http, stack, account, workflow_id, "mine")
    stranger = create_account(stack)
    async with http.get(events_url(stack, run["id"]), headers=stranger.headers) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "NOT_FOUND"
    async with http.get(
        events_url(stack, run["id"]), headers={**account.headers, "Last-Event-ID": "x"}
    ) as response:
        assert response.status == 400
