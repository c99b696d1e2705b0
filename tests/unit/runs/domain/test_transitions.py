"""A run's transitions: what each changes, what it emits, where its events go."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.runs.domain.transitions import (
    AwaitingInput,
    Canceled,
    Completed,
    Created,
    Failed,
    IllegalTransition,
    InputSubmitted,
    Queued,
    Released,
    Requeued,
    RunState,
    StageCompleted,
    StageRef,
    StageResult,
    StageStarted,
    Started,
    TimedOut,
    advance,
    route,
)
from weftcore.events import RunEvent
from weftcore.nats import JOBS_SUBJECT

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DRAFT = StageRef(0, "draft", "llm")
WRAP = StageRef(1, "wrap", "template")


def pending(**overrides: Any) -> RunState:
    run = RunState(
        id="run_1",
        workflow_id="wf_1",
        workflow_version=1,
        user_id="usr_1",
        team_id="",
        account_id="usr_1",
        input_text="hi",
        params={},
        attachment_ids=[],
        webhook_url=None,
        holds_reservation=True,
        created_at=T0,
    )
    for name, value in overrides.items():
        setattr(run, name, value)
    return advance(run, [Created()], T0).run


def test_a_created_run_is_pending_with_its_event_billing_copy_and_first_job() -> None:
    new = RunState("run_1", "wf_1", 1, "usr_1", "", "usr_1", "hi", {}, [], None, True, T0)
    change = advance(new, [Created()], T0)
    assert change.expected_version is None and change.run.version == 1
    assert [(e.type, e.seq) for e in change.events] == [("run.created", 1)]
    assert change.events[0].run["status"] == "pending"
    assert [m.subject for m in change.outbox] == [
        "weft.runs.run_1.run.created",
        "weft.billing.run_1.run.created",
        JOBS_SUBJECT,
    ]
    assert change.outbox[-1].msg_id == "job-run_1-0"  # a retried creation queues one job
    assert new.version == 0 and not new.stages  # advance works on a copy


def test_a_whole_template_run_in_one_change_snapshots_each_step() -> None:
    run = pending()
    change = advance(
        run,
        [
            Started("w1"),
            StageCompleted(StageRef(0, "a", "template"), StageResult("A")),
            StageCompleted(StageRef(1, "b", "template"), StageResult("B", cost_micros=20_000)),
            Completed("B"),
        ],
        T0 + timedelta(seconds=1),
    )
    types = [e.type for e in change.events]
    assert types == [
        "run.started",
        "stage.started",
        "stage.completed",
        "stage.started",
        "stage.completed",
        "run.completed",
    ]
    assert [e.seq for e in change.events] == [2, 3, 4, 5, 6, 7]
    assert change.run.next_event_seq == 8 and change.expected_version == 1
    started_b = change.events[3].run
    assert started_b["status"] == "running"
    assert [c["stage"] for c in started_b["cost_breakdown"]] == ["a"]  # b is still running
    final = change.events[-1].run
    assert (final["status"], final["result"], final["cost_cents"]) == ("completed", "B", 2)
    assert [s.status for s in change.stages] == ["completed", "completed"]
    assert change.run.worker_id is None and change.run.completed_at is not None


def test_a_stage_counts_once() -> None:
    run = advance(pending(), [Started("w1"), StageStarted(DRAFT)], T0).run
    done = advance(run, [StageCompleted(DRAFT, StageResult("x", cost_micros=5))], T0).run
    with pytest.raises(IllegalTransition):
        advance(done, [StageCompleted(DRAFT, StageResult("x", cost_micros=5))], T0)
    assert done.cost_micros == 5


def test_a_stage_started_again_after_a_crash_emits_no_second_event() -> None:
    run = advance(pending(), [Started("w1"), StageStarted(DRAFT)], T0).run
    again = advance(run, [Started("w2"), StageStarted(DRAFT)], T0)
    assert again.events == ()  # not a first start either
    assert again.run.worker_id == "w2"


def test_a_failed_stage_keeps_the_usage_it_was_charged() -> None:
    run = advance(pending(), [Started("w1"), StageStarted(DRAFT)], T0).run
    change = advance(
        run,
        [Failed("LLM_INVALID_OUTPUT", "bad", DRAFT, StageResult("junk", "m", 10, 5, 6000))],
        T0,
    )
    row = change.run.stages["draft"]
    assert (row.status, row.output, row.cost_micros) == ("failed", None, 6000)
    assert change.run.cost_micros == 6000
    assert change.run.error == {"code": "LLM_INVALID_OUTPUT", "message": "bad", "stage": "draft"}
    assert [e.type for e in change.events] == ["run.failed"]
    assert change.events[0].stage == "draft"


def test_an_output_failure_names_output() -> None:
    run = advance(pending(), [Started("w1")], T0).run
    change = advance(run, [Failed("TEMPLATE_ERROR", "output: nope")], T0)
    assert change.run.error is not None and change.run.error["stage"] == "output"


def test_review_pauses_and_an_answer_resumes_with_a_new_job() -> None:
    run = advance(pending(), [Started("w1"), StageStarted(DRAFT)], T0).run
    request = {"stage": "draft", "prompt": "ok?", "fields": []}
    waiting = advance(run, [AwaitingInput(DRAFT, request)], T0).run
    assert (waiting.status, waiting.human_input_request, waiting.worker_id) == (
        "awaiting_input",
        request,
        None,
    )
    answered = advance(waiting, [InputSubmitted("draft", {"ok": True})], T0)
    assert answered.run.status == "running" and answered.run.human_input_request is None
    assert answered.run.human_inputs == {"draft": {"ok": True}}
    assert [m.subject for m in answered.outbox] == [JOBS_SUBJECT] and not answered.events
    with pytest.raises(IllegalTransition):
        advance(answered.run, [InputSubmitted("draft", {"ok": False})], T0)


def test_only_a_run_that_is_not_final_can_be_canceled() -> None:
    canceled = advance(pending(), [Canceled()], T0)
    assert canceled.run.status == "canceled" and canceled.run.completed_at == T0
    assert [e.type for e in canceled.events] == ["run.canceled"]
    with pytest.raises(IllegalTransition):
        advance(canceled.run, [Canceled()], T0)
    with pytest.raises(IllegalTransition):
        advance(canceled.run, [Started("w1")], T0)


def test_requeue_clears_the_worker_and_queues_a_job() -> None:
    run = advance(pending(), [Started("w1")], T0).run
    change = advance(run, [Requeued()], T0)
    assert change.run.worker_id is None and [m.subject for m in change.outbox] == [JOBS_SUBJECT]


def test_a_run_gets_its_deadline_when_it_first_starts() -> None:
    run = advance(pending(timeout_seconds=30), [Started("w1")], T0).run
    assert run.deadline_at == T0 + timedelta(seconds=30)
    later = T0 + timedelta(seconds=10)
    resumed = advance(advance(run, [Released()], later).run, [Started("w2")], later).run
    assert resumed.deadline_at == T0 + timedelta(seconds=30)  # a resume keeps it
    assert advance(pending(), [Started("w1")], T0).run.deadline_at is None  # no limit


def test_a_timed_out_run_fails_with_its_running_stage_stopped() -> None:
    run = advance(pending(timeout_seconds=5), [Started("w1"), StageStarted(DRAFT)], T0).run
    change = advance(run, [TimedOut()], T0 + timedelta(seconds=5))
    row = change.run.stages["draft"]
    assert (row.status, row.output, row.cost_micros) == ("failed", None, 0)
    assert change.run.status == "failed" and change.run.worker_id is None
    assert change.run.error == {
        "code": "TIMEOUT",
        "message": "The run ran over its timeout of 5 seconds.",
        "stage": "draft",
    }
    assert [(e.type, e.stage) for e in change.events] == [("run.failed", "draft")]
    # Billing gets its copy: the capture releases the rest of the reservation.
    assert "weft.billing.run_1.run.failed" in [m.subject for m in change.outbox]
    with pytest.raises(IllegalTransition):
        advance(change.run, [TimedOut()], T0)


def test_a_run_waiting_for_input_times_out_naming_the_review() -> None:
    run = advance(pending(timeout_seconds=5), [Started("w1"), StageStarted(DRAFT)], T0).run
    request = {"stage": "draft", "prompt": "ok?", "fields": []}
    waiting = advance(run, [AwaitingInput(DRAFT, request)], T0).run
    change = advance(waiting, [TimedOut()], T0 + timedelta(seconds=6))
    assert change.run.human_input_request is None
    assert change.run.error is not None and change.run.error["stage"] == "draft"


def test_starting_a_limited_run_takes_a_slot_and_nothing_else_does() -> None:
    limited = pending(concurrency_limit=2)
    assert advance(limited, [Started("w1")], T0).takes_slot
    assert not advance(pending(), [Started("w1")], T0).takes_slot  # no limit
    assert not advance(limited, [Canceled()], T0).takes_slot
    running = advance(limited, [Started("w1")], T0).run
    assert not advance(running, [Started("w2")], T0).takes_slot  # a resume holds one
    accounted = pending(account_concurrency_limit=5)
    assert advance(accounted, [Started("w1"), Completed("x")], T0).takes_slot


def test_a_run_refused_a_slot_waits_until_requeued() -> None:
    waiting = advance(pending(concurrency_limit=1), [Queued()], T0)
    assert waiting.run.status == "pending" and waiting.run.queued_at == T0
    assert not waiting.events and not waiting.outbox  # no job: the dispatcher gives one
    again = advance(waiting.run, [Queued()], T0 + timedelta(seconds=1)).run
    assert again.queued_at == T0  # its first refusal
    requeued = advance(again, [Requeued()], T0)
    assert requeued.run.queued_at is None
    assert [m.subject for m in requeued.outbox] == [JOBS_SUBJECT]
    with pytest.raises(IllegalTransition):
        advance(advance(again, [Started("w1")], T0).run, [Queued()], T0)


def event(type: str) -> RunEvent:
    return RunEvent("evt_1", type, "run_1", 2, "", {})


@pytest.mark.parametrize(
    ("type", "reserved", "url", "subjects", "hooked"),
    [
        (
            "run.completed",
            True,
            None,
            ["weft.runs.run_1.run.completed", "weft.billing.run_1.run.completed"],
            False,
        ),
        ("run.completed", False, "https://h.example/x", ["weft.runs.run_1.run.completed"], True),
        (
            "stage.completed",
            True,
            "https://h.example/x",
            ["weft.runs.run_1.stage.completed"],
            False,
        ),
        (
            "run.awaiting_input",
            True,
            "https://h.example/x",
            ["weft.runs.run_1.run.awaiting_input"],
            True,
        ),
        (
            "run.canceled",
            True,
            None,
            ["weft.runs.run_1.run.canceled", "weft.billing.run_1.run.canceled"],
            False,
        ),
    ],
)
def test_route(
    type: str, reserved: bool, url: str | None, subjects: list[str], hooked: bool
) -> None:
    run = pending(holds_reservation=reserved, webhook_url=url)
    messages, hook = route(event(type), run)
    assert [m.subject for m in messages] == subjects
    assert all(m.msg_id == "evt_1" and m.payload is None for m in messages)
    assert (hook is not None) is hooked
    if hook is not None:
        assert (hook.url, hook.event_type) == (url, type)
