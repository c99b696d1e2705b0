"""The capture consumer acks only after the capture committed, and never loses a run."""

from typing import Any

import pytest

from services.billing.capture import CaptureConsumer, usages_from_event
from services.billing.pricing import Usage
from services.billing.service import CaptureResult
from weftcore.errors import InvalidArgument, NotFound
from weftcore.events import RunEvent


class FakeMsg:
    def __init__(self, data: bytes, log: list[str]) -> None:
        self.data = data
        self.subject = "weft.runs.run_x.run.completed"
        self.log = log

    async def ack(self) -> None:
        self.log.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.log.append("nak")

    async def term(self) -> None:
        self.log.append("term")


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


def event(breakdown: list[dict[str, Any]]) -> RunEvent:
    return RunEvent(
        id="evt_1",
        type="run.completed",
        run_id="run_x",
        seq=5,
        created_at="2026-01-01T00:00:00.000Z",
        run={"id": "run_x", "status": "completed", "cost_breakdown": breakdown},
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
