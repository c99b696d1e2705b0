"""Live tokens through the whole stack: an `llm` stage streams from the (fake,
OpenAI-compatible) provider, its pieces reach SSE clients as `stage.delta` events between
stage.started and stage.completed, with ids a client resumes from mid-stage (nothing
lost or repeated), and none of them is written to Postgres."""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import aiohttp
import pytest
from weftapi import AsyncWeft

from tests.integration.test_events_sse import collect, events_url, read_events
from tests.support.runs import Account, apply_workflow, create_run, runs_db, wait_for

pytestmark = pytest.mark.timeout(120)

WORDS = " ".join(f"word{i}" for i in range(1, 31))


def streaming_stage(pause: float) -> list[dict[str, Any]]:
    tag = uuid.uuid4().hex[:8]
    prompt = f"[[tag:{tag}]] [[tokens:{pause}]] [[reply:{WORDS}]] {{{{ input_text }}}}"
    return [{"id": "talk", "type": "llm", "model": "fake:echo", "prompt": prompt}]


def order(frame_id: str) -> tuple[int, int]:
    seq, _, n = frame_id.partition(".")
    return int(seq), int(n or 0)


async def test_tokens_stream_between_the_stage_events_and_are_not_stored(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(stack, streaming_stage(0.02))
    run = await create_run(http, stack, account, workflow_id, "go")
    frames = await collect(http, stack, account, run["id"])
    kinds = [f["event"] for f in frames]
    first, last = kinds.index("stage.delta"), len(kinds) - 1 - kinds[::-1].index("stage.delta")
    assert kinds[first - 1] == "stage.started" and kinds[last + 1] == "stage.completed", kinds
    assert set(kinds[first : last + 1]) == {"stage.delta"}
    pieces = [json.loads(f["data"]) for f in frames[first : last + 1]]
    assert all(p["type"] == "stage.delta" and p["stage"] == "talk" for p in pieces)
    assert [p["index"] for p in pieces] == list(range(1, len(pieces) + 1))
    assert "".join(p["delta"] for p in pieces) == WORDS
    ids = [order(f["id"]) for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert ids[first] == (order(frames[first - 1]["id"])[0], 1)

    done = json.loads(frames[-1]["data"])["data"]
    assert done["status"] == "completed" and done["result"] == WORDS
    [cost] = done["cost_breakdown"]  # usage still read (include_usage) for the cost
    assert cost["output_tokens"] == 31 and cost["input_tokens"] > 0

    conn = await runs_db(stack)
    try:
        stored = await conn.fetch("SELECT type FROM run_events WHERE run_id = $1", run["id"])
    finally:
        await conn.close()
    assert "stage.delta" not in {r["type"] for r in stored}


async def test_a_client_resumes_mid_stage_with_nothing_lost_or_repeated(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(stack, streaming_stage(0.1))
    run = await create_run(http, stack, account, workflow_id, "go")
    seen: list[dict[str, Any]] = []
    async with http.get(events_url(stack, run["id"]), headers=account.headers) as response:
        async for frame in read_events(response):
            if "event" in frame:
                seen.append(frame)
            if sum(f["event"] == "stage.delta" for f in seen) == 5:
                break  # the client drops mid-stage
    resume_at = seen[-1]["id"]
    assert "." in resume_at
    rest = await collect(http, stack, account, run["id"], **{"Last-Event-ID": resume_at})
    frames = seen + rest
    pieces = [json.loads(f["data"]) for f in frames if f["event"] == "stage.delta"]
    assert [p["index"] for p in pieces] == list(range(1, len(pieces) + 1))
    assert "".join(p["delta"] for p in pieces) == WORDS
    ids = [order(f["id"]) for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert frames[-1]["event"] == "run.completed"

    # Afterwards (within the tokens' retention) a replay from the start has them all.
    replay = await collect(http, stack, account, run["id"])
    assert [f["id"] for f in replay] == [f["id"] for f in frames]
    finished = await wait_for(http, stack, account, run["id"])
    assert finished["result"] == WORDS


async def test_a_malformed_last_event_id_is_400(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    for bad in ("1.x", "-1.2", "1.2.3"):
        async with http.get(
            events_url(stack, "run_any"), headers={**account.headers, "Last-Event-ID": bad}
        ) as response:
            answer = await response.json()
        assert response.status == 400, answer
        assert answer["error"]["param"] == "Last-Event-ID"


async def test_the_embedded_model_streams_its_tokens(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    """The real llama.cpp server streams too (`stream: true`, usage in the last chunk)."""
    if stack.llm is None:
        pytest.skip("the embedded model is not installed (./scripts/setup installs it)")
    stages = [
        {
            "id": "talk",
            "type": "llm",
            "model": "local:qwen2.5-coder-1.5b-instruct",
            "prompt": "Name three colours of the rainbow, comma-separated.",
            "max_tokens": 24,
        }
    ]
    workflow_id = await apply_workflow(stack, stages)
    run = await create_run(http, stack, account, workflow_id, "go")
    frames = await collect(http, stack, account, run["id"])
    pieces = [json.loads(f["data"]) for f in frames if f["event"] == "stage.delta"]
    done = json.loads(frames[-1]["data"])["data"]
    assert done["status"] == "completed", done
    assert len(pieces) >= 3  # token by token, not one block
    assert "".join(p["delta"] for p in pieces) == done["result"]
    [cost] = done["cost_breakdown"]
    assert 0 < cost["output_tokens"] <= 24 and cost["input_tokens"] > 0


async def test_the_sdk_and_weft_run_print_tokens_as_they_come(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(stack, streaming_stage(0.02))
    async with AsyncWeft(api_key=account.token, base_url=stack.base_url) as weft:
        run = await weft.runs.create(workflow_id, "sdk")
        pieces = [e.delta async for e in weft.runs.events(run.id) if e.type == "stage.delta"]
    assert "".join(p or "" for p in pieces) == WORDS and len(pieces) == 30

    env = {k: v for k, v in os.environ.items() if not k.startswith("WEFT_")}
    env.update(WEFT_API_KEY=account.token, WEFT_BASE_URL=stack.base_url)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "weftapi.cli", "run", workflow_id, "--input", "cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["result"] == WORDS
    assert WORDS in done.stderr  # the tokens, written as they came
