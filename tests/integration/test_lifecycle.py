"""The run lifecycle through the real stack: gateway -> runs -> outbox -> NATS -> worker.

The worker's LLM provider "fake" is tests/support/fake_llm.py; prompts script it.
"""

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import asyncpg
import nats
import pytest

from services.billing.config import BillingConfig
from tests.support.runs import (
    Account,
    admin_json,
    apply_workflow,
    create_run,
    create_user,
    event_types,
    fake_llm_calls,
    post_run_action,
    runs_db,
    wait_for,
)
from weftcore.nats import BILLING_STREAM

pytestmark = pytest.mark.timeout(180)

# Two template stages: a run of them is pure (the worker computes and commits it whole).
GREET_SHOUT = [
    {"id": "greet", "type": "template", "template": "hi {{ input_text }}"},
    {"id": "shout", "type": "template", "template": "{{ stages.greet | upper }}"},
]


def tag() -> str:
    return uuid.uuid4().hex[:12]


async def test_llm_and_template_run_completes_with_costs_and_events(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    t = tag()
    workflow_id = await apply_workflow(
        stack,
        [
            {
                "id": "draft",
                "type": "llm",
                "model": "fake:echo",
                "max_tokens": 50,
                "prompt": "[[tag:" + t + "]] [[reply:four score and seven]] {{ input_text }}",
            },
            {"id": "shout", "type": "template", "template": "{{ stages.draft | upper }}!"},
        ],
        output='{"text": {{ stages.shout | tojson }}, "n": {{ params.n }}}',
        fields=[{"name": "n", "type": "integer", "default": 3}],
    )
    created = await create_run(http, stack, account, workflow_id, "years ago")
    assert created["status"] == "pending"
    run = await wait_for(http, stack, account, created["id"])

    assert run["status"] == "completed", run
    assert run["result"] == {"text": "FOUR SCORE AND SEVEN!", "n": 3}
    assert run["error"] is None
    draft, shout = run["cost_breakdown"]
    assert draft["stage"] == "draft" and draft["model"] == "fake:echo"
    assert draft["input_tokens"] > 0 and draft["output_tokens"] == 5
    assert shout == {
        "stage": "shout",
        "type": "template",
        "model": None,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_cents": 0,
        "duration_ms": shout["duration_ms"],
    }
    assert run["cost_cents"] >= 1  # fake:echo is priced: any cost rounds up to a cent
    assert run["started_at"] and run["completed_at"]
    assert (await fake_llm_calls(stack))[t] == 1

    conn = await runs_db(stack)
    try:
        events = await event_types(conn, created["id"])
        row = await conn.fetchrow(
            "SELECT cost_micros, worker_id FROM runs WHERE id = $1", created["id"]
        )
        stage_cost = await conn.fetchval(
            "SELECT sum(cost_micros) FROM stage_results WHERE run_id = $1", created["id"]
        )
    finally:
        await conn.close()
    assert events[-6:] == [
        ("run.started", None),
        ("stage.started", "draft"),
        ("stage.completed", "draft"),
        ("stage.started", "shout"),
        ("stage.completed", "shout"),
        ("run.completed", None),
    ]
    # Prices from the stack: fake:echo costs 1 USD / 2 USD per million tokens, and
    # billing rounds each stage up to a whole cent (10,000 micros).
    raw = draft["input_tokens"] * 1 + draft["output_tokens"] * 2
    expected = -(-raw // 10_000) * 10_000
    assert row["cost_micros"] == int(stage_cost) == expected
    assert row["worker_id"] is None
    # Billing captured exactly that, from its copy of run.completed.
    await billing_caught_up(stack)
    billing = await asyncpg.connect(stack.dsn, server_settings={"search_path": "billing"})
    try:
        captured = await billing.fetchrow(
            "SELECT status, captured_micros FROM reservations WHERE run_id = $1", created["id"]
        )
    finally:
        await billing.close()
    assert captured is not None and dict(captured) == {
        "status": "captured",
        "captured_micros": expected,
    }


async def test_template_only_run_commits_whole_with_every_event(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    # All stages pure: the worker computes them and commits the run in one transaction;
    # clients must see the same rows and events as for a run executed stage by stage.
    workflow_id = await apply_workflow(
        stack,
        GREET_SHOUT,
        output='{"text": {{ stages.shout | tojson }}, "n": {{ params.n }}}',
        fields=[{"name": "n", "type": "integer", "default": 3}],
    )
    created = await create_run(http, stack, account, workflow_id, "ada")
    run = await wait_for(http, stack, account, created["id"])
    assert run["status"] == "completed", run
    assert run["result"] == {"text": "HI ADA", "n": 3}
    assert [c["stage"] for c in run["cost_breakdown"]] == ["greet", "shout"]
    assert run["cost_cents"] == 0 and run["started_at"] and run["completed_at"]

    conn = await runs_db(stack)
    try:
        events = await conn.fetch(
            "SELECT seq, type, stage, payload FROM run_events WHERE run_id = $1 ORDER BY seq",
            created["id"],
        )
        stages = await conn.fetch(
            "SELECT stage_id, status, output FROM stage_results WHERE run_id = $1"
            " ORDER BY stage_index",
            created["id"],
        )
        row = await conn.fetchrow(
            "SELECT next_event_seq, worker_id FROM runs WHERE id = $1", created["id"]
        )
        queued = await conn.fetch(
            "SELECT msg_id FROM outbox WHERE msg_id = ANY($1::text[]) ORDER BY id",
            [e["payload"]["id"] for e in events],
        )
    finally:
        await conn.close()
    assert [(e["type"], e["stage"]) for e in events] == [
        ("run.created", None),
        ("run.started", None),
        ("stage.started", "greet"),
        ("stage.completed", "greet"),
        ("stage.started", "shout"),
        ("stage.completed", "shout"),
        ("run.completed", None),
    ]
    assert [e["seq"] for e in events] == list(range(1, 8))
    assert row["next_event_seq"] == 8 and row["worker_id"] is None
    assert [(s["stage_id"], s["status"], s["output"]) for s in stages] == [
        ("greet", "completed", "hi ada"),
        ("shout", "completed", "HI ADA"),
    ]
    # Every event went to the outbox, in order; the last one shows the finished run.
    assert [q["msg_id"] for q in queued] == [e["payload"]["id"] for e in events]
    assert events[1]["payload"]["run"]["status"] == "running"
    assert events[3]["payload"]["run"]["cost_breakdown"][0]["stage"] == "greet"
    final = events[-1]["payload"]["run"]
    assert final == {k: v for k, v in run.items() if k != "links"}


async def test_concurrent_template_runs_each_get_their_own_result(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    # Jobs that arrive together share the worker's transactions: each run must still
    # get its own result, rows and events.
    workflow_id = await apply_workflow(
        stack,
        GREET_SHOUT,
    )
    names = [f"n{i}-{tag()}" for i in range(25)]
    created = await asyncio.gather(
        *(create_run(http, stack, account, workflow_id, name) for name in names)
    )
    runs = await asyncio.gather(*(wait_for(http, stack, account, c["id"]) for c in created))
    assert [r["result"] for r in runs] == [f"HI {name.upper()}" for name in names]
    conn = await runs_db(stack)
    try:
        counts = await conn.fetch(
            "SELECT run_id, count(*) AS n, max(seq) AS last FROM run_events"
            " WHERE run_id = ANY($1::text[]) GROUP BY run_id",
            [c["id"] for c in created],
        )
    finally:
        await conn.close()
    assert sorted((r["n"], r["last"]) for r in counts) == [(7, 7)] * 25
    # Template-only runs on the owner's account cost nothing and skip billing: no copy
    # of their events is published for billing, which keeps no reservation or ledger
    # entry of zero for them.
    ids = [c["id"] for c in created]
    conn = await runs_db(stack)
    try:
        subjects = await conn.fetch(
            "SELECT DISTINCT split_part(subject, '.', 2) AS family FROM outbox"
            " WHERE msg_id IN (SELECT event_id FROM run_events WHERE run_id = ANY($1::text[]))",
            ids,
        )
    finally:
        await conn.close()
    assert [r["family"] for r in subjects] == ["runs"]
    await billing_caught_up(stack)
    billing = await asyncpg.connect(stack.dsn, server_settings={"search_path": "billing"})
    try:
        reservations = await billing.fetchval(
            "SELECT count(*) FROM reservations WHERE run_id = ANY($1::text[])", ids
        )
        entries = await billing.fetchval(
            "SELECT count(*) FROM ledger WHERE run_id = ANY($1::text[])", ids
        )
    finally:
        await billing.close()
    assert (reservations, entries) == (0, 0)


async def test_a_team_members_free_run_is_reserved_and_captured_through_billings_copies(
    stack: Any, http: aiohttp.ClientSession
) -> None:
    # A team member's run reserves even when it cannot cost anything (the allocation
    # check applies), so billing gets copies of its run.created and run.completed, on
    # the pure path too, and closes the reservation at zero.
    team = admin_json(stack, "teams", "create", "--name", f"T {tag()}", "--plan", "team")
    member = create_user(stack)
    admin_json(stack, "teams", "add-member", "--team", team["id"], "--user", member.user_id)
    stack.admin("credits", "grant", "--account", team["id"], "--amount-usd", "5")
    stack.admin(
        "allocations", "set", "--team", team["id"], "--user", member.user_id, "--monthly-usd", "1"
    )
    workflow_id = await apply_workflow(stack, GREET_SHOUT)
    created = await create_run(http, stack, member, workflow_id, "bo")
    run = await wait_for(http, stack, member, created["id"])
    assert run["status"] == "completed" and run["result"] == "HI BO"

    conn = await runs_db(stack)
    try:
        copies = await conn.fetch(
            "SELECT subject FROM outbox WHERE subject LIKE 'weft.billing.%' AND subject LIKE $1"
            " ORDER BY id",
            f"%.{created['id']}.%",
        )
    finally:
        await conn.close()
    assert [r["subject"] for r in copies] == [
        f"weft.billing.{created['id']}.run.created",
        f"weft.billing.{created['id']}.run.completed",
    ]
    await billing_caught_up(stack)
    billing = await asyncpg.connect(stack.dsn, server_settings={"search_path": "billing"})
    try:
        reservation = await billing.fetchrow(
            "SELECT account_id, status, captured_micros FROM reservations WHERE run_id = $1",
            created["id"],
        )
    finally:
        await billing.close()
    assert reservation is not None
    assert dict(reservation) == {
        "account_id": team["id"],
        "status": "captured",
        "captured_micros": 0,
    }


async def billing_caught_up(stack: Any, seconds: float = 30) -> None:
    """Waits until billing's capture consumer has acked every event published so far."""
    nc = await nats.connect(stack.nats.url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + seconds
        while True:
            info = await js.consumer_info(BILLING_STREAM, BillingConfig.consumer_name)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            assert time.monotonic() < deadline, f"billing still has {info} to handle"
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def test_human_review_awaits_input_then_resumes_to_completed(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(
        stack,
        [
            {"id": "draft", "type": "template", "template": "Dear {{ input_text }}"},
            {
                "id": "review",
                "type": "human_review",
                "prompt": "Approve '{{ stages.draft }}'?",
                "fields": [
                    {"name": "approved", "type": "boolean", "required": True},
                    {"name": "note", "type": "text"},
                ],
            },
            {
                "id": "final",
                "type": "template",
                "output": "json",
                "template": '{{ {"approved": stages.review.approved, "text": stages.draft} '
                "| tojson }}",
            },
        ],
    )
    created = await create_run(http, stack, account, workflow_id, "Ada")
    waiting = await wait_for(http, stack, account, created["id"], ("awaiting_input",))
    request = waiting["human_input_request"]
    assert request["stage"] == "review"
    assert request["prompt"] == "Approve 'Dear Ada'?"
    assert [f["name"] for f in request["fields"]] == ["approved", "note"]
    assert request["context"] == {"stages": {"draft": "Dear Ada"}}
    assert [c["stage"] for c in waiting["cost_breakdown"]] == ["draft"]

    status, body = await post_run_action(
        http, stack, account, created["id"], "input", {"values": {"approved": True}}
    )
    assert status == 200, body
    done = await wait_for(http, stack, account, created["id"])
    assert done["status"] == "completed", done
    assert done["result"] == {"approved": True, "text": "Dear Ada"}
    assert done["human_input_request"] is None
    assert [c["stage"] for c in done["cost_breakdown"]] == ["draft", "review", "final"]

    status, body = await post_run_action(
        http, stack, account, created["id"], "input", {"values": {"approved": False}}
    )
    assert status == 409 and body["error"]["code"] == "RUN_NOT_AWAITING_INPUT"

    conn = await runs_db(stack)
    try:
        events = [e for e, _ in await event_types(conn, created["id"])]
    finally:
        await conn.close()
    assert events.count("run.awaiting_input") == 1
    assert events.count("run.started") == 1
    assert events[-1] == "run.completed"


async def test_template_error_fails_the_run_with_a_clear_stage_error(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(
        stack,
        [
            {"id": "ok", "type": "template", "template": "fine"},
            {"id": "broken", "type": "template", "template": "{{ stages.nope.text }}"},
            {"id": "never", "type": "template", "template": "unreached"},
        ],
    )
    created = await create_run(http, stack, account, workflow_id)
    run = await wait_for(http, stack, account, created["id"])
    assert run["status"] == "failed"
    assert run["error"]["code"] == "TEMPLATE_ERROR"
    assert run["error"]["stage"] == "broken"
    assert "'nope'" in run["error"]["message"]
    assert [c["stage"] for c in run["cost_breakdown"]] == ["ok", "broken"]
    assert run["result"] is None and run["completed_at"]


async def test_llm_500_after_retries_fails_with_llm_error(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    t = tag()
    workflow_id = await apply_workflow(
        stack,
        [
            {
                "id": "ask",
                "type": "llm",
                "model": "fake:echo",
                "prompt": "[[fail:500]] [[tag:" + t + "]] {{ input_text }}",
            }
        ],
    )
    created = await create_run(http, stack, account, workflow_id)
    run = await wait_for(http, stack, account, created["id"])
    assert run["status"] == "failed"
    assert run["error"]["code"] == "LLM_ERROR"
    assert run["error"]["stage"] == "ask"
    assert "HTTP 500" in run["error"]["message"]
    assert (await fake_llm_calls(stack))[t] > 1  # retried before giving up
    assert run["cost_cents"] == 0


async def test_json_answer_validated_against_the_stage_schema(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    schema = {
        "type": "object",
        "required": ["label"],
        "properties": {"label": {"enum": ["bug", "feature"]}},
    }
    stage = {
        "id": "classify",
        "type": "llm",
        "model": "fake:echo",
        "response_format": "json",
        "json_schema": schema,
        "prompt": "{{ input_text }}",
    }
    workflow_id = await apply_workflow(stack, [stage])
    good = await create_run(http, stack, account, workflow_id, '[[json:{"label": "bug"}]]')
    bad = await create_run(http, stack, account, workflow_id, '[[json:{"label": "cat"}]]')
    good_run = await wait_for(http, stack, account, good["id"])
    bad_run = await wait_for(http, stack, account, bad["id"])
    assert good_run["status"] == "completed" and good_run["result"] == {"label": "bug"}
    assert bad_run["status"] == "failed"
    assert bad_run["error"]["code"] == "LLM_INVALID_OUTPUT"
    assert bad_run["error"]["stage"] == "classify"
    assert "label" in bad_run["error"]["message"]


async def test_cancel_stops_a_running_run(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    t = tag()
    workflow_id = await apply_workflow(
        stack,
        [
            {
                "id": "slow",
                "type": "llm",
                "model": "fake:echo",
                "prompt": "[[sleep:4]] [[tag:" + t + "]]",
            },
            {"id": "after", "type": "template", "template": "x"},
        ],
    )
    created = await create_run(http, stack, account, workflow_id)
    await wait_for(http, stack, account, created["id"], ("running",))
    status, body = await post_run_action(http, stack, account, created["id"], "cancel")
    assert status == 200, body
    assert body["data"]["status"] == "canceled"
    status, body = await post_run_action(http, stack, account, created["id"], "cancel")
    assert status == 409

    conn = await runs_db(stack)
    try:
        # Wait past the slow call: the worker must not complete anything after cancel.
        for _ in range(40):
            if (await fake_llm_calls(stack)).get(t):
                break
            await _sleep(0.25)
        await _sleep(2.5)
        row = await conn.fetchrow("SELECT status FROM runs WHERE id = $1", created["id"])
        events = [e for e, _ in await event_types(conn, created["id"])]
    finally:
        await conn.close()
    assert row["status"] == "canceled"
    assert "stage.completed" not in events and events[-1] == "run.canceled"


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
