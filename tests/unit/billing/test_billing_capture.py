"""The capture consumer acks only after the capture committed, and never loses a run."""

from typing import Any

import pytest

from services.billing.capture import CaptureConsumer, usages_from_event
from services.billing.pricing import Usage
from services.billing.repository import FreeCapture
from services.billing.service import CaptureResult
from weftcore.errors import InvalidArgument, NotFound
from weftcore.events import RunEvent


class FakeMsg:
    def __init__(self, data: bytes, log: list[str], name: str = "") -> None:
        self.data = data
        self.subject = "weft.billing.run_x.run.completed"
        self.log = log
        self.name = name  # tells messages apart in the log of a batch

    async def ack(self) -> None:
        self.log.append(f"ack {self.name}".strip())

    async def nak(self, delay: float | None = None) -> None:
        self.log.append(f"nak {self.name}".strip())

    async def term(self) -> None:
        self.log.append(f"term {self.name}".strip())


class FakeBilling:
    def __init__(self, log: list[str], fail: Exception | None = None) -> None:
        self.log = log
        self.fail = fail
        self.calls: list[tuple[str, list[Usage]]] = []

    async def capture(self, run_id: str, stages: list[Usage]) -> CaptureResult:
        self.calls.append((run_id, stages))
        if self.fail is not None:
            raise self.fail
        self.log.append("commit")
        return CaptureResult(run_id, 10_000, 0, False)

    async def capture_many(self, runs: list[tuple[str, list[Usage]]]) -> dict[str, CaptureResult]:
        self.log.append(f"capture_many {','.join(run_id for run_id, _ in runs)}")
        if self.fail is not None:
            raise self.fail
        return {r: CaptureResult(r, 10_000, 0, False) for r, _ in runs if r not in self.team_runs}

    async def confirm(self, run_id: str) -> bool:
        self.log.append(f"confirm {run_id}")
        return True

    async def confirm_many(self, run_ids: list[str]) -> None:
        self.log.append(f"confirm_many {','.join(run_ids)}")

    async def capture_free(self, run_ids: list[str]) -> FreeCapture:
        self.log.append(f"capture_free {','.join(run_ids)}")
        if self.fail is not None:
            raise self.fail
        return FreeCapture(
            captured={r for r in run_ids if r not in self.holding | self.unreserved},
            unreserved={r for r in run_ids if r in self.unreserved},
        )

    holding: set[str] = set()  # runs whose reservation held credits (capture_free skips)
    unreserved: set[str] = set()  # runs that never reserved (free, own account)
    team_runs: set[str] = set()  # runs a team member reserved (capture_many skips)


def event(
    breakdown: list[dict[str, Any]], run_id: str = "run_x", type: str = "run.completed"
) -> RunEvent:
    return RunEvent(
        id="evt_1",
        type=type,
        run_id=run_id,
        seq=5,
        created_at="2026-01-01T00:00:00.000Z",
        run={"id": run_id, "status": "completed", "cost_breakdown": breakdown},
    )


BREAKDOWN: list[dict[str, Any]] = [
    {"stage": "render", "type": "template", "model": None, "input_tokens": 0,
     "output_tokens": 0, "cost_cents": 0, "duration_ms": 1},
    {"stage": "summarize", "type": "llm", "model": "fake:echo", "input_tokens": 812,
     "output_tokens": 143, "cost_cents": 1, "duration_ms": 950},
]  # fmt: skip


def consumer(billing: FakeBilling) -> CaptureConsumer:
    return CaptureConsumer(js=None, billing=billing, durable="test")  # type: ignore[arg-type]


def test_usages_come_from_the_breakdown() -> None:
    assert usages_from_event(event(BREAKDOWN)) == [
        Usage("render", "", 0, 0),
        Usage("summarize", "fake:echo", 812, 143),
    ]


def test_missing_breakdown_means_nothing_ran() -> None:
    assert usages_from_event(event([])) == []


@pytest.mark.parametrize("bad", [-1, 1.5, "12", True])
def test_bad_token_counts_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        usages_from_event(event([{"stage": "s", "model": "m:x", "input_tokens": bad}]))


async def test_ack_only_after_commit() -> None:
    log: list[str] = []
    billing = FakeBilling(log)
    await consumer(billing).handle(FakeMsg(event(BREAKDOWN).to_json(), log))  # type: ignore[arg-type]
    assert log == ["commit", "ack"]
    assert billing.calls[0][0] == "run_x"


async def test_transient_failure_is_retried_not_acked() -> None:
    log: list[str] = []
    billing = FakeBilling(log, fail=ConnectionError("db down"))
    await consumer(billing).handle(FakeMsg(event(BREAKDOWN).to_json(), log))  # type: ignore[arg-type]
    assert log == ["nak"]


async def test_run_without_reservation_is_acked() -> None:
    log: list[str] = []
    billing = FakeBilling(log, fail=NotFound("no reservation"))
    await consumer(billing).handle(FakeMsg(event(BREAKDOWN).to_json(), log))  # type: ignore[arg-type]
    assert log == ["ack"]


async def test_poison_messages_are_terminated() -> None:
    log: list[str] = []
    billing = FakeBilling(log)
    await consumer(billing).handle(FakeMsg(b"{not json", log))  # type: ignore[arg-type]
    billing.fail = InvalidArgument("Unknown model")
    await consumer(billing).handle(FakeMsg(event(BREAKDOWN).to_json(), log))  # type: ignore[arg-type]
    assert log == ["term", "term"]


FREE: list[dict[str, Any]] = [BREAKDOWN[0]]  # a template stage: no tokens


def batch(log: list[str], *events: tuple[str, RunEvent]) -> list[Any]:
    return [FakeMsg(e.to_json(), log, name) for name, e in events]


async def test_a_batch_shares_confirms_and_free_captures() -> None:
    log: list[str] = []
    billing = FakeBilling(log)
    msgs = batch(
        log,
        ("ca", event([], "run_a", "run.created")),
        ("cb", event([], "run_b", "run.created")),
        ("da", event(FREE, "run_a")),
        ("db", event(FREE, "run_b")),
        ("dc", event(BREAKDOWN, "run_c")),  # spent tokens: the general capture
    )
    await consumer(billing).handle_batch(msgs)
    assert log == [
        "confirm_many run_a,run_b",
        "ack ca",
        "ack cb",
        "capture_free run_a,run_b",
        "ack da",
        "ack db",
        "commit",
        "ack dc",
    ]
    assert [run_id for run_id, _ in billing.calls] == ["run_c"]


async def test_free_runs_that_held_credits_take_the_general_capture() -> None:
    log: list[str] = []
    billing = FakeBilling(log)
    billing.holding = {"run_b"}  # e.g. an llm run that failed before any stage ran
    await consumer(billing).handle_batch(
        batch(log, ("da", event(FREE, "run_a")), ("db", event([], "run_b")))
    )
    assert log == ["capture_free run_a,run_b", "ack da", "commit", "ack db"]


async def test_free_runs_that_never_reserved_are_acked_without_a_capture() -> None:
    log: list[str] = []
    billing = FakeBilling(log)
    billing.unreserved = {"run_b"}  # a template-only run on its owner's account
    await consumer(billing).handle_batch(
        batch(log, ("da", event(FREE, "run_a")), ("db", event([], "run_b")))
    )
    assert log == ["capture_free run_a,run_b", "ack da", "ack db"]
    assert billing.calls == []


async def test_a_failed_batch_capture_falls_back_one_by_one() -> None:
    log: list[str] = []
    billing = FakeBilling(log, fail=ConnectionError("db down"))
    await consumer(billing).handle_batch(
        batch(log, ("da", event(FREE, "run_a")), ("db", event(FREE, "run_b")))
    )
    # Nothing acked without a commit: each is retried later.
    assert log == ["capture_free run_a,run_b", "nak da", "nak db"]


async def test_runs_that_spent_tokens_share_one_capture() -> None:
    log: list[str] = []
    billing = FakeBilling(log)
    billing.team_runs = {"run_b"}  # an allocation to check: captured on its own
    msgs = batch(
        log,
        ("pa", event(BREAKDOWN, "run_a")),
        ("pb", event(BREAKDOWN, "run_b")),
        ("pc", event(BREAKDOWN, "run_c")),
        ("pa2", event(BREAKDOWN, "run_a")),  # redelivered in the same fetch
    )
    await consumer(billing).handle_batch(msgs)
    assert log == [
        "capture_many run_a,run_b,run_c,run_a",
        "ack pa",
        "ack pc",
        "ack pa2",
        "commit",
        "ack pb",
    ]
    assert [run_id for run_id, _ in billing.calls] == ["run_b"]


async def test_a_failed_priced_batch_falls_back_one_by_one() -> None:
    log: list[str] = []
    billing = FakeBilling(log, fail=ConnectionError("db down"))
    await consumer(billing).handle_batch(
        batch(log, ("pa", event(BREAKDOWN, "run_a")), ("pb", event(BREAKDOWN, "run_b")))
    )
    assert log == ["capture_many run_a,run_b", "nak pa", "nak pb"]
