"""The Python SDK (weftapi, clients/python) against the live stack: create, wait, get,
auto-paging, events (sync and async), raw headers, typed errors, refused connections,
human review."""

from pathlib import Path
from typing import Any

import httpx
import pytest
from weftapi import (
    AsyncWeft,
    BadRequestError,
    ConflictError,
    NotFoundError,
    Run,
    Weft,
    WeftConnectionError,
)

from devstack.ports import free_port
from tests.support.runs import Account, apply_workflow, create_account

TEMPLATE = '{{ {"input": input_text, "count": params.count, "doc": params.get("doc")} | tojson }}'
FIELDS = [
    {"name": "count", "type": "integer", "required": True},
    {"name": "doc", "type": "file"},
]
REVIEW: list[dict[str, Any]] = [
    {"id": "draft", "type": "template", "template": "Dear {{ input_text }}, thanks."},
    {
        "id": "review",
        "type": "human_review",
        "prompt": "Approve the draft?",
        "context": '{{ {"draft": stages.draft} | tojson }}',
        "fields": [{"name": "approved", "type": "boolean", "required": True}],
    },
    {
        "id": "final",
        "type": "template",
        "output": "json",
        "template": '{{ {"approved": stages.review.approved, "reply": stages.draft} | tojson }}',
    },
]


@pytest.fixture(scope="module")
async def workflow_id(stack: Any) -> str:
    return await apply_workflow(
        stack,
        [{"id": "echo", "type": "template", "output": "json", "template": TEMPLATE}],
        fields=FIELDS,
    )


@pytest.fixture(scope="module")
async def review_id(stack: Any) -> str:
    return await apply_workflow(stack, REVIEW)


def test_sync_create_replay_wait_and_raw_headers(
    stack: Any, account: Account, workflow_id: str
) -> None:
    with Weft(account.token, stack.base_url) as weft:
        raw = weft.with_raw_response.runs.create(
            workflow_id, "hello", params={"count": 2}, idempotency_key="sdk-k1"
        )
        assert raw.status_code == 201 and not raw.idempotent_replayed
        assert raw.rate_limit_remaining is not None and raw.request_id.startswith("req_")
        run = raw.parse()
        assert isinstance(run, Run) and run.id.startswith("run_")
        again = weft.with_raw_response.runs.create(
            workflow_id, "hello", params={"count": 2}, idempotency_key="sdk-k1"
        )
        assert again.idempotent_replayed and again.parse().id == run.id
        done = weft.runs.wait(run.id, timeout=120)
        assert done.status == "completed" and done.done
        assert done.result == {"input": "hello", "count": 2, "doc": None}
        assert weft.runs.get(run.id).completed_at == done.completed_at
        flow = weft.workflows.get(workflow_id)
        assert [f.name for f in flow.fields] == ["count", "doc"] and flow.fields[0].required
        assert workflow_id in {w.id for w in weft.workflows.list(limit=1)}


def test_errors_carry_code_param_and_request_id(
    stack: Any, account: Account, workflow_id: str
) -> None:
    with Weft(account.token, stack.base_url) as weft:
        with pytest.raises(BadRequestError) as bad:
            weft.runs.create(workflow_id, "x", params={"count": "two"})
        assert bad.value.status == 400 and bad.value.code == "INVALID_PARAM"
        assert bad.value.param == "params.count"
        assert bad.value.request_id and bad.value.request_id.startswith("req_")
        with pytest.raises(NotFoundError) as missing:
            weft.runs.get("run_doesnotexist")
        assert missing.value.code == "NOT_FOUND" and "404 NOT_FOUND" in str(missing.value)


def test_the_environment_configures_the_client(
    stack: Any, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEFT_API_KEY", account.token)
    monkeypatch.setenv("WEFT_BASE_URL", stack.base_url)
    with Weft() as weft:
        assert weft.me().user_id == account.user_id


async def test_lists_page_through_every_run_sync_and_async(stack: Any, workflow_id: str) -> None:
    account = create_account(stack)  # its own runs only
    async with AsyncWeft(account.token, stack.base_url) as weft:
        made = [await weft.runs.create(workflow_id, f"r{i}", params={"count": i}) for i in range(5)]
        expected = [r.id for r in reversed(made)]  # newest first
        listed = [r.id async for r in weft.runs.list(workflow_id=workflow_id, limit=2)]
        assert listed == expected
        first = await weft.runs.list(workflow_id=workflow_id, limit=2)
        assert len(first.data) == 2 and first.has_more
    with Weft(account.token, stack.base_url) as sync:
        page = sync.runs.list(workflow_id=workflow_id, limit=2)
        assert [r.id for r in page] == expected
        assert len(list(page.iter_pages())) == 3


def test_sync_events_follow_every_stage(stack: Any, account: Account, workflow_id: str) -> None:
    with Weft(account.token, stack.base_url) as weft:
        run = weft.runs.create(workflow_id, "events", params={"count": 1})
        events = list(weft.runs.events(run.id))
    kinds = [(e.type, e.stage) for e in events]
    assert kinds[-3:] == [
        ("stage.started", "echo"),
        ("stage.completed", "echo"),
        ("run.completed", None),
    ]
    assert events[-1].data is not None and events[-1].data.result["count"] == 1
    seqs = [int(e.seq or 0) for e in events]
    assert seqs == sorted(seqs) and seqs[0] > 0
    # Resuming after the next-to-last event replays only the last one.
    with Weft(account.token, stack.base_url) as weft:
        rest = list(weft.runs.events(run.id, last_event_id=events[-2].seq))
    assert [e.type for e in rest] == ["run.completed"]


async def test_async_upload_events_and_human_review(
    stack: Any, account: Account, workflow_id: str, review_id: str, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("some notes\n")
    async with AsyncWeft(account.token, stack.base_url) as weft:
        att = await weft.attachments.upload(notes)
        assert att.id.startswith("att_") and att.kind == "txt"
        assert (await weft.attachments.get(att.id)).sha256 == att.sha256
        run = await weft.runs.create(workflow_id, "file", params={"count": 3, "doc": att.id})
        types = [e.type async for e in weft.runs.events(run.id)]
        assert types[-1] == "run.completed" and "stage.started" in types
        assert (await weft.runs.get(run.id)).result["doc"] == att.id

        review = await weft.runs.create(review_id, "Ada")
        async for event in weft.runs.events(review.id):
            if event.type == "run.awaiting_input":
                break
        waiting = await weft.runs.get(review.id)
        assert waiting.status == "awaiting_input" and waiting.human_input_request is not None
        request = waiting.human_input_request
        assert request.stage == "review" and request.context == {"draft": "Dear Ada, thanks."}
        assert [f.name for f in request.fields] == ["approved"]
        await weft.runs.submit_input(review.id, {"approved": True})
        done = await weft.runs.wait(review.id, timeout=120)
        assert done.result == {"approved": True, "reply": "Dear Ada, thanks."}
        with pytest.raises(ConflictError) as caught:
            await weft.runs.submit_input(review.id, {"approved": False})
        assert caught.value.code == "RUN_NOT_AWAITING_INPUT"


async def test_a_refused_connection_says_so(account: Account) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Weft(account.token, url, max_retries=1) as weft, pytest.raises(WeftConnectionError) as e:
        weft.me()
    assert str(e.value) == f"cannot reach {url}: connection refused"
    async with AsyncWeft(account.token, url, max_retries=0) as aweft:
        with pytest.raises(WeftConnectionError) as ae:
            await aweft.runs.get("run_x")
    assert str(ae.value) == f"cannot reach {url}: connection refused"


def test_code_for_a_public_endpoint_is_keyless_unless_asked(stack: Any) -> None:
    owner = create_account(stack)
    definition = {
        "slug": f"sdk-public-{free_port()}",
        "name": "Public",
        "stages": [{"id": "t", "type": "template", "template": "{{ input_text }}"}],
        "endpoint": {"auth": "public"},
    }
    base = f"{stack.base_url}/api/v1/workflows"
    created = httpx.post(base, json=definition, headers=owner.headers)
    workflow_id = created.json()["data"]["id"]
    assert httpx.post(f"{base}/{workflow_id}/publish", headers=owner.headers).status_code == 201
    with Weft(owner.token, stack.base_url) as weft:
        [keyless] = weft.workflows.code(workflow_id, language="python")
        assert keyless.auth == "none" and "WEFT_API_KEY" not in keyless.code
        [keyed] = weft.workflows.code(workflow_id, language="python", auth="key")
        assert keyed.auth == "key" and "WEFT_API_KEY" in keyed.code
