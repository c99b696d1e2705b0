"""How the consumer settles jobs with JetStream for each executor outcome."""

from dataclasses import dataclass, field
from typing import Any

import pytest

from services.runs.worker.consumer import ConsumerSettings, Job, JobConsumer, job_of
from services.runs.worker.executor import Outcome


@dataclass
class _Meta:
    num_delivered: int


@dataclass
class FakeMsg:
    data: bytes
    delivered: int = 1
    settled: list[Any] = field(default_factory=list)
    headers: dict[str, str] | None = None

    @property
    def metadata(self) -> _Meta:
        return _Meta(self.delivered)

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append(("nak", delay))

    async def term(self) -> None:
        self.settled.append("term")

    async def in_progress(self) -> None:
        self.settled.append("wpi")


class FakeExecutor:
    def __init__(self, outcome: Outcome | Exception) -> None:
        self.outcome = outcome
        self.seen: list[str] = []

    async def execute(self, run_id: str, progress: Any = None) -> Outcome:
        self.seen.append(run_id)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    room = 16  # runs that could start stage by stage now

    def stepwise_room(self) -> int:
        return self.room


def consumer(outcome: Outcome | Exception) -> tuple[JobConsumer, FakeExecutor]:
    executor = FakeExecutor(outcome)
    settings = ConsumerSettings(max_deliver=5, retry_delay_seconds=2.0)
    return JobConsumer(None, executor, settings), executor  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outcome", "delivered", "settled"),
    [
        (Outcome.DONE, 1, ["ack"]),
        (Outcome.RELEASED, 1, [("nak", None)]),
        (Outcome.RETRY, 1, [("nak", 2.0)]),
        (Outcome.RETRY, 3, [("nak", 8.0)]),
        (Outcome.RETRY, 5, ["term"]),
        (RuntimeError("bug"), 2, [("nak", 4.0)]),
    ],
)
async def test_outcomes_settle_the_job(
    outcome: Outcome | Exception, delivered: int, settled: list[Any]
) -> None:
    job, executor = consumer(outcome)
    msg = FakeMsg(b'{"run_id": "run_1"}', delivered)
    await job.handle(msg)  # type: ignore[arg-type]
    assert executor.seen == ["run_1"]
    assert msg.settled == settled


async def test_malformed_job_is_terminated_without_executing() -> None:
    job, executor = consumer(Outcome.DONE)
    msg = FakeMsg(b"not json")
    await job.handle(msg)  # type: ignore[arg-type]
    assert executor.seen == [] and msg.settled == ["term"]


@pytest.mark.parametrize(
    ("data", "job"),
    [
        (b'{"run_id": "run_x", "request_id": "req_1"}', Job("run_x", "req_1")),
        (b'{"run_id": "run_x"}', Job("run_x", "-")),  # queued by recovery, or before ids
        (b'{"run_id": "run_x", "request_id": 7}', Job("run_x", "-")),
        (b'{"run_id": ""}', None),
        (b"[]", None),
        (b'{"id": "run_x"}', None),
        (b"not json", None),
    ],
)
def test_job_of(data: bytes, job: Job | None) -> None:
    assert job_of(FakeMsg(data)) == job  # type: ignore[arg-type]


@pytest.mark.parametrize(("room", "jobs_in_flight", "asked"), [(3, 128, 3), (16, 5, 5)])
async def test_a_fetch_asks_for_no_more_jobs_than_there_is_room_for(
    room: int, jobs_in_flight: int, asked: int
) -> None:
    sizes: list[int] = []

    class FakeSub:
        async def fetch(self, batch: int, timeout: float) -> list[Any]:
            sizes.append(batch)
            job.stop()
            return []

    class FakeJS:
        async def pull_subscribe(self, *args: Any, **kwargs: Any) -> FakeSub:
            return FakeSub()

    executor = FakeExecutor(Outcome.DONE)
    executor.room = room  # e.g. LLM runs busy: their jobs should wait in JetStream
    job = JobConsumer(FakeJS(), executor, ConsumerSettings(jobs_in_flight=jobs_in_flight))  # type: ignore[arg-type]
    await job.run()
    assert sizes == [asked]
