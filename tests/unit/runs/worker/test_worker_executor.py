"""Executor logic with fakes: order, resume after a crash, failures, human review, fencing."""

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.runs.domain.transitions import (
    Canceled,
    RunState,
    StageRef,
    StageResult,
    StageRow,
    Started,
    Transition,
    advance,
)
from services.runs.worker.context import AttachmentText, Services
from services.runs.worker.executor import Executor, Outcome, parse_maybe_json
from services.runs.worker.llm_client import ChatResult, LLMError
from services.runs.worker.model import NoSlot, RunRecord
from services.runs.worker.store import should_take
from weftcore.events import RunEvent


class FakeLLM:
    def __init__(self, answers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        self.answers = answers or {}
        self.calls: list[list[dict[str, str]]] = []
        self.delay = delay

    async def chat(self, model_id: str, messages: list[dict[str, str]], **_: Any) -> ChatResult:
        self.calls.append(messages)
        await asyncio.sleep(self.delay)
        prompt = messages[-1]["content"]
        if "FAIL" in prompt:
            raise LLMError("LLM provider 'fake' answered HTTP 500: boom (gave up after 4 attempts)")
        text = self.answers.get(prompt, f"answer to {prompt}")
        return ChatResult(text, model_id, input_tokens=10, output_tokens=5)

    def context_tokens(self, model_id: str) -> int:
        return 200


class FakePricer:
    async def price(self, stage_id: str, model: str, input_tokens: int, output_tokens: int) -> int:
        return input_tokens * 100 + output_tokens * 1000


NOW = datetime(2026, 1, 1, tzinfo=UTC)


class FakeStore:
    """The Store in memory: run states by id, changed through the real transitions
    (domain/transitions.py) with the writer's version fence."""

    def __init__(self, definition: dict[str, Any], state: RunState) -> None:
        self.definition = definition
        self.states: dict[str, RunState] = {state.id: state}
        self.log: list[tuple[str, str | None]] = []  # (transition, stage id)
        self.events: list[RunEvent] = []
        self.owned = True  # what heartbeats answer
        self.reads = 0

    # ---- executor.Store ----
    async def load(self, run_id: str) -> RunRecord | None:
        self.reads += 1
        state = self.states.get(run_id)
        return None if state is None else RunRecord.of(state.copy(), self.definition, NOW)

    async def write(self, run: RunRecord, *transitions: Transition) -> bool:
        if self.states[run.id].version != run.state.version:
            return False
        change = advance(run.state, transitions, NOW)
        self.states[run.id] = run.state = change.run
        self.events.extend(change.events)
        for t in transitions:
            stage = getattr(t, "stage", None)
            self.log.append((type(t).__name__, stage.id if isinstance(stage, StageRef) else None))
        return True

    async def load_many(self, run_ids: Sequence[str]) -> list[RunRecord | None]:
        return [await self.load(run_id) for run_id in run_ids]

    async def write_many(self, changes: Sequence[tuple[RunRecord, list[Transition]]]) -> list[bool]:
        return [await self.write(run, *transitions) for run, transitions in changes]

    async def heartbeat(self, run_id: str, worker_id: str) -> bool:
        return self.owned

    # ---- what the tests read ----
    @property
    def run(self) -> RunState:
        return self.states["run_1"]

    @property
    def status(self) -> str:
        return self.run.status

    @property
    def result(self) -> Any:
        return self.run.result

    @property
    def error(self) -> dict[str, Any] | None:
        return self.run.error

    @property
    def request(self) -> dict[str, Any] | None:
        return self.run.human_input_request

    @property
    def results(self) -> dict[str, StageRow]:
        """The stage rows that settled (completed or failed)."""
        return {k: s for k, s in self.run.stages.items() if s.status != "running"}

    def cancel(self, run_id: str = "run_1") -> None:
        """The owner cancels: a new version, and the worker's heartbeats fail."""
        self.states[run_id] = advance(self.states[run_id], [Canceled()], NOW).run
        self.owned = False


def new_state(run_id: str = "run_1", status: str = "pending", **inputs: Any) -> RunState:
    return RunState(
        id=run_id,
        workflow_id="wf_1",
        workflow_version=1,
        user_id="usr_1",
        team_id="",
        account_id="usr_1",
        input_text=inputs.pop("input_text", "hi"),
        params=inputs.pop("params", {}),
        attachment_ids=inputs.pop("attachment_ids", []),
        webhook_url=None,
        holds_reservation=True,
        created_at=NOW,
        status=status,
        human_inputs=inputs.pop("human_inputs", {}),
        started_at=None if status == "pending" else NOW,
        version=1,
        **inputs,
    )


def make_store(
    stages: list[dict[str, Any]],
    *,
    definition: dict[str, Any] | None = None,
    status: str = "pending",
    stage_rows: dict[str, tuple[str, Any]] | None = None,  # stage id -> (status, output)
    **inputs: Any,
) -> FakeStore:
    state = new_state(status=status, **inputs)
    for index, stage in enumerate(stages):
        if stage["id"] in (stage_rows or {}):
            row_status, output = (stage_rows or {})[stage["id"]]
            state.stages[stage["id"]] = StageRow(
                index, stage["id"], stage["type"], row_status, NOW, output
            )
    return FakeStore({"stages": stages, **(definition or {})}, state)


def make_executor(store: FakeStore, llm: FakeLLM | None = None, **kw: Any) -> Executor:
    async def read_text(user_id: str, ids: list[str]) -> list[AttachmentText]:
        return [AttachmentText(i, f"{i}.csv", "csv", "a,b\n" * 500, False) for i in ids]

    services = Services(llm=llm or FakeLLM(), pricer=FakePricer(), read_text=read_text)
    return Executor(store, services, "w1", **kw)


TWO_STAGES = [
    {"id": "draft", "type": "llm", "model": "fake:echo", "prompt": "write about {{ input_text }}"},
    {
        "id": "wrap",
        "type": "template",
        "template": "<{{ stages.draft }}|{{ stages.draft.output }}>",
    },
]


async def test_stages_run_in_order_and_feed_each_other() -> None:
    store = make_store(TWO_STAGES, definition={"output": '{"text": {{ stages.wrap|tojson }}}'})
    llm = FakeLLM()
    assert await make_executor(store, llm).execute("run_1") is Outcome.DONE
    assert store.log == [
        ("Started", None),
        ("StageStarted", "draft"),
        ("StageCompleted", "draft"),
        ("StageCompleted", "wrap"),  # the last stage and the run's end: one write
        ("Completed", None),
    ]
    assert [e.type for e in store.events] == [
        "run.started",
        "stage.started",
        "stage.completed",
        "stage.started",
        "stage.completed",
        "run.completed",
    ]
    assert [e.seq for e in store.events] == list(range(1, 7))
    assert store.results["wrap"].output == "<answer to write about hi|answer to write about hi>"
    assert store.result == {"text": "<answer to write about hi|answer to write about hi>"}
    draft = store.results["draft"]
    assert (draft.model, draft.input_tokens, draft.output_tokens, draft.cost_micros) == (
        "fake:echo",
        10,
        5,
        6000,
    )
    assert llm.calls[0][0]["role"] == "system" and "plain text" in llm.calls[0][0]["content"]


async def test_without_output_the_last_stage_is_the_result() -> None:
    store = make_store(TWO_STAGES)
    await make_executor(store).execute("run_1")
    assert store.result == store.results["wrap"].output


async def test_resume_skips_completed_and_reruns_started_stage() -> None:
    stages = [
        *TWO_STAGES[:1],
        {"id": "second", "type": "llm", "model": "fake:echo", "prompt": "again"},
        TWO_STAGES[1],
    ]
    store = make_store(
        stages,
        status="running",
        stage_rows={"draft": ("completed", "persisted draft"), "second": ("running", None)},
    )
    llm = FakeLLM()
    assert await make_executor(store, llm).execute("run_1") is Outcome.DONE
    assert [c[-1]["content"] for c in llm.calls] == ["again"]  # draft not called again
    assert store.results["wrap"].output == "<persisted draft|persisted draft>"
    assert ("StageCompleted", "draft") not in store.log
    assert store.status == "completed"
    # The interrupted stage starts again without a second stage.started; no run.started.
    assert [e.type for e in store.events] == [
        "stage.completed",
        "stage.started",
        "stage.completed",
        "run.completed",
    ]


async def test_llm_failure_fails_the_run_with_the_stage() -> None:
    stages = [{"id": "ask", "type": "llm", "model": "fake:echo", "prompt": "FAIL please"}]
    store = make_store(stages)
    await make_executor(store).execute("run_1")
    assert store.status == "failed"
    assert store.error is not None
    assert store.error["code"] == "LLM_ERROR" and store.error["stage"] == "ask"
    assert "HTTP 500" in store.error["message"]


async def test_template_error_names_the_stage_and_the_problem() -> None:
    stages = [{"id": "t", "type": "template", "template": "{{ stages.missing.output }}"}]
    store = make_store(stages)
    await make_executor(store).execute("run_1")
    assert store.error == {
        "code": "TEMPLATE_ERROR",
        "stage": "t",
        "message": "template: undefined value in template: 'dict object' has no attribute "
        "'missing'",
    }


async def test_output_template_error_fails_with_stage_output() -> None:
    stages = [{"id": "t", "type": "template", "template": "fine"}]
    store = make_store(stages, definition={"output": "{{ nope }}"})
    await make_executor(store).execute("run_1")
    assert store.error is not None and store.error["stage"] == "output"
    assert store.error["code"] == "TEMPLATE_ERROR"


async def test_json_answer_is_validated_against_the_schema() -> None:
    schema = {
        "type": "object",
        "required": ["label"],
        "properties": {"label": {"enum": ["bug", "feature"]}},
    }
    stages = [
        {
            "id": "c",
            "type": "llm",
            "model": "fake:echo",
            "prompt": "classify",
            "response_format": "json",
            "json_schema": schema,
        }
    ]
    good = make_store(stages)
    await make_executor(good, FakeLLM({"classify": '```json\n{"label": "bug"}\n```'})).execute(
        "run_1"
    )
    assert good.result == {"label": "bug"}

    bad = make_store(stages)
    await make_executor(bad, FakeLLM({"classify": '{"label": "other"}'})).execute("run_1")
    assert bad.error is not None and bad.error["code"] == "LLM_INVALID_OUTPUT"
    assert "at label" in bad.error["message"]
    assert bad.results["c"].cost_micros == 6000  # the tokens were spent: still counted

    prose = make_store(stages)
    await make_executor(prose, FakeLLM({"classify": "it is a bug"})).execute("run_1")
    assert prose.error is not None and "not valid JSON" in prose.error["message"]


REVIEW: list[dict[str, Any]] = [
    {"id": "draft", "type": "template", "template": "draft {{ input_text }}"},
    {
        "id": "review",
        "type": "human_review",
        "prompt": "Check {{ stages.draft }}",
        "fields": [{"name": "approved", "type": "boolean", "required": True}],
    },
    {"id": "final", "type": "template", "template": "{{ stages.review.approved }}"},
]


async def test_human_review_pauses_then_resumes_with_the_answer() -> None:
    store = make_store(REVIEW)
    assert await make_executor(store).execute("run_1") is Outcome.DONE
    assert store.status == "awaiting_input"
    assert store.request == {
        "stage": "review",
        "prompt": "Check draft hi",
        "fields": REVIEW[1]["fields"],
        "context": {"stages": {"draft": "draft hi"}},
    }
    assert "final" not in store.results

    store2 = make_store(
        REVIEW,
        status="running",  # InputSubmitted
        human_inputs={"review": {"approved": True}},
        stage_rows={"draft": ("completed", "draft hi"), "review": ("running", None)},
    )
    await make_executor(store2).execute("run_1")
    assert store2.results["review"].output == {"approved": True}
    assert store2.result == "True"
    assert store2.status == "completed"


async def test_cancel_during_a_stage_stops_the_run() -> None:
    stages = [{"id": "slow", "type": "llm", "model": "fake:echo", "prompt": "x"}, TWO_STAGES[1]]
    store = make_store(stages)
    executor = make_executor(store, FakeLLM(delay=0.5), heartbeat_seconds=0.05)

    async def cancel_soon() -> None:
        await asyncio.sleep(0.1)
        store.cancel()

    canceller = asyncio.create_task(cancel_soon())
    assert await executor.execute("run_1") is Outcome.DONE
    await canceller
    assert "slow" not in store.results and store.status == "canceled"
    assert store.log[-1] == ("StageStarted", "slow")  # nothing written after the cancel


async def test_a_write_after_the_run_moved_on_is_refused() -> None:
    stages = [{"id": "slow", "type": "llm", "model": "fake:echo", "prompt": "x"}]
    store = make_store(stages)
    executor = make_executor(store, FakeLLM(delay=0.2), heartbeat_seconds=10)

    async def cancel_soon() -> None:
        await asyncio.sleep(0.05)
        store.states["run_1"] = advance(store.run, [Canceled()], NOW).run  # heartbeats miss it

    canceller = asyncio.create_task(cancel_soon())
    assert await executor.execute("run_1") is Outcome.DONE
    await canceller
    assert store.status == "canceled" and not store.results


async def test_heartbeats_report_progress_during_long_stages() -> None:
    stages = [{"id": "slow", "type": "llm", "model": "fake:echo", "prompt": "x"}]
    store = make_store(stages)
    beats: list[int] = []

    async def progress() -> None:
        beats.append(1)

    executor = make_executor(store, FakeLLM(delay=0.3), heartbeat_seconds=0.05)
    await executor.execute("run_1", progress)
    assert len(beats) >= 2 and store.status == "completed"


async def test_stopping_releases_before_the_next_stage() -> None:
    store = make_store(TWO_STAGES)
    executor = make_executor(store)
    executor.stopping.set()
    assert await executor.execute("run_1") is Outcome.RELEASED
    assert store.log == [("Started", None), ("Released", None)]
    assert store.run.worker_id is None and store.status == "running"


async def test_attachments_are_truncated_to_the_model_context_with_a_note() -> None:
    stages = [
        {
            "id": "s",
            "type": "llm",
            "model": "fake:echo",
            "max_tokens": 50,
            "prompt": "{% for a in attachments %}{{ a.filename }}:{{ a.text }}{% endfor %}",
        }
    ]
    store = make_store(stages, attachment_ids=["att_1"])
    llm = FakeLLM()
    await make_executor(store, llm).execute("run_1")
    prompt = llm.calls[0][-1]["content"]
    assert prompt.startswith("att_1.csv:a,b")
    assert "[... truncated: att_1.csv has 2000 characters" in prompt
    assert len(prompt) < 2000


@pytest.mark.parametrize(
    ("row", "take"),
    [
        ({"status": "pending"}, True),
        ({"status": "completed"}, False),
        ({"status": "canceled"}, False),
        ({"status": "running", "worker_id": None}, True),
        ({"status": "running", "worker_id": "w1", "heartbeat_at": NOW}, True),
        ({"status": "running", "worker_id": "w2", "heartbeat_at": NOW}, False),
        (
            {"status": "running", "worker_id": "w2", "heartbeat_at": NOW - timedelta(seconds=30)},
            True,
        ),
        ({"status": "awaiting_input", "human_input_request": {"stage": "r"}}, False),
        (
            {
                "status": "awaiting_input",
                "human_input_request": {"stage": "r"},
                "human_inputs": {"r": {"ok": 1}},
            },
            True,
        ),
    ],
)
def test_should_take(row: dict[str, Any], take: bool) -> None:
    assert should_take(new_state(**row), "w1", 10.0, NOW) is take


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": 1}', {"a": 1}),
        ("[1]", [1]),
        ("42", 42),
        ("plain", "plain"),
        ("NaN", "NaN"),
        ("{broken", "{broken"),
    ],
)
def test_result_parsing(text: str, value: Any) -> None:
    assert parse_maybe_json(text) == value


async def test_duplicate_job_in_the_same_process_is_dropped() -> None:
    stages = [{"id": "slow", "type": "llm", "model": "fake:echo", "prompt": "x"}]
    store = make_store(stages)
    llm = FakeLLM(delay=0.2)
    executor = make_executor(store, llm)
    first, second = await asyncio.gather(executor.execute("run_1"), executor.execute("run_1"))
    assert (first, second) == (Outcome.DONE, Outcome.DONE)
    assert len(llm.calls) == 1 and store.status == "completed"


class CountingLLM(FakeLLM):
    """Slow answers; remembers how many calls overlapped at most."""

    def __init__(self) -> None:
        super().__init__(delay=0.1)
        self.in_flight = 0
        self.max_in_flight = 0

    async def chat(self, model_id: str, messages: list[dict[str, str]], **kw: Any) -> ChatResult:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await super().chat(model_id, messages, **kw)
        finally:
            self.in_flight -= 1


class ManyRuns(FakeStore):
    """Every run id is a pending run of its own with the same stages."""

    async def load(self, run_id: str) -> RunRecord | None:
        self.states.setdefault(run_id, new_state(run_id))
        return await super().load(run_id)


async def test_at_most_concurrency_runs_go_stage_by_stage_and_waiting_jobs_stay_alive() -> None:
    llm = CountingLLM()
    executor = make_executor(
        ManyRuns({"stages": TWO_STAGES}, new_state()),
        llm,
        concurrency=2,
        job_keepalive_seconds=0.03,
    )
    keepalives: dict[str, int] = {}
    room_seen: list[int] = []

    async def job(run_id: str) -> Outcome:
        async def progress() -> None:
            keepalives[run_id] = keepalives.get(run_id, 0) + 1

        return await executor.execute(run_id, progress)

    jobs = [asyncio.create_task(job(f"run_{i}")) for i in range(5)]
    while not all(j.done() for j in jobs):
        room_seen.append(executor.stepwise_room())
        await asyncio.sleep(0.01)
    assert [j.result() for j in jobs] == [Outcome.DONE] * 5
    assert llm.max_in_flight == 2 and len(llm.calls) == 5
    assert min(room_seen) == 2 - 5  # all five wanted a slot: the consumer fetches none
    assert executor.stepwise_room() == 2
    assert keepalives.get("run_4", 0) >= 1  # queued longest: told JetStream it lives


async def test_an_unexpected_exception_in_a_stage_fails_the_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def crashes(stage: dict[str, Any], context: dict[str, Any]) -> StageResult:
        raise KeyError("surprise")

    monkeypatch.setattr("services.runs.worker.stages.template.run", crashes)
    for stages in (
        [{"id": "t", "type": "template", "template": "x"}],  # a template-only run
        [*TWO_STAGES[:1], {"id": "t", "type": "template", "template": "x"}],  # after an llm
    ):
        store = make_store(stages)
        assert await make_executor(store).execute("run_1") is Outcome.DONE
        assert store.status == "failed"
        assert store.error is not None
        assert (store.error["code"], store.error["stage"]) == ("INTERNAL", "t")
        assert "KeyError" in store.error["message"] and "surprise" not in store.error["message"]
    crashed = [r for r in caplog.records if r.getMessage() == "stage crashed; failing the run"]
    assert crashed and all(getattr(r, "run_id", None) == "run_1" for r in crashed)


async def test_an_outage_inside_a_stage_is_retried_not_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def unreachable(stage: dict[str, Any], context: dict[str, Any]) -> StageResult:
        raise ConnectionRefusedError("billing down")

    monkeypatch.setattr("services.runs.worker.stages.template.run", unreachable)
    store = make_store([*TWO_STAGES[:1], {"id": "t", "type": "template", "template": "x"}])
    assert await make_executor(store).execute("run_1") is Outcome.RETRY
    assert store.status == "running" and store.error is None
    assert store.log[-1] == ("Released", None) and store.run.worker_id is None


async def test_an_http_stage_whose_header_cannot_be_sent_fails_the_run() -> None:
    stages = [
        {
            "id": "call",
            "type": "http",
            "url": "http://127.0.0.1:9/",
            "headers": {"X-Note": "{{ input_text }}"},
        }
    ]
    store = make_store(stages, input_text="a\r\nX-Injected: 1")
    assert await make_executor(store).execute("run_1") is Outcome.DONE
    assert store.error is not None
    assert (store.error["code"], store.error["stage"]) == ("HTTP_INVALID_REQUEST", "call")


class CountingWrites(ManyRuns):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.batches: list[int] = []

    async def write_many(self, changes: Sequence[tuple[RunRecord, list[Transition]]]) -> list[bool]:
        self.batches.append(len(changes))
        return await super().write_many(changes)


async def test_template_runs_of_the_moment_are_written_together() -> None:
    stages = [{"id": "t", "type": "template", "template": "{{ input_text }}!"}]
    store = CountingWrites({"stages": stages}, new_state())
    executor = make_executor(store)
    outcomes = await asyncio.gather(*(executor.execute(f"run_{i}") for i in range(10)))
    assert outcomes == [Outcome.DONE] * 10
    assert all(store.states[f"run_{i}"].result == "hi!" for i in range(10))
    # The first job goes at once; the nine that arrived meanwhile share one statement.
    assert store.batches == [1, 9]
    assert executor.stepwise_room() == 16  # none went stage by stage
    await executor.close()


SCHEMA = {"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}


async def test_a_result_that_breaks_the_output_schema_fails_the_run() -> None:
    stages = [{"id": "t", "type": "template", "template": "{{ input_text }}"}]
    for text, error in (
        ('{"total": 10}', None),
        ("", "empty result: it does not match the workflow's output_schema at (root)"),
        (
            '{"total": "ten"}',
            "unexpected result: it does not match the workflow's output_schema at total",
        ),
    ):
        definition = {"output_schema": SCHEMA, "output": "{{ input_text }}"}
        store = make_store(stages, definition=definition, input_text=text)
        await make_executor(store).execute("run_1")
        if error is None:
            assert (store.status, store.result) == ("completed", {"total": 10})
            continue
        assert store.status == "failed" and store.error is not None
        assert (store.error["code"], store.error["stage"]) == ("OUTPUT_INVALID", "output")
        assert store.error["message"].startswith(error), store.error


async def test_a_pending_run_is_read_once_and_a_moved_one_again() -> None:
    stages = [{"id": "ask", "type": "llm", "model": "fake:echo", "prompt": "x"}]
    store = make_store(stages)
    assert await make_executor(store).execute("run_1") is Outcome.DONE
    assert store.status == "completed" and store.reads == 1

    # Canceled after the job's first look: the claim's write is refused, it reads again
    # and finds nothing to do.
    moved = make_store(stages)
    executor = make_executor(moved)
    load = moved.load

    async def load_then_cancel(run_id: str) -> RunRecord | None:
        record = await load(run_id)
        if moved.reads == 1:
            moved.cancel()
        return record

    moved.load = load_then_cancel  # type: ignore[method-assign]
    assert await executor.execute("run_1") is Outcome.DONE
    assert moved.status == "canceled" and moved.reads == 2 and not moved.results


async def test_a_run_past_its_deadline_fails_with_timeout_before_its_next_stage() -> None:
    # Started at NOW (long ago) with a one-second limit: out of time at once.
    store = make_store(TWO_STAGES, timeout_seconds=1)
    llm = FakeLLM()
    assert await make_executor(store, llm).execute("run_1") is Outcome.DONE
    assert store.status == "failed" and not llm.calls
    assert store.run.error is not None and store.run.error["code"] == "TIMEOUT"
    assert store.log[-1] == ("TimedOut", None)


async def test_a_stage_running_past_the_deadline_is_stopped() -> None:
    now = datetime.now(UTC)
    store = make_store(
        TWO_STAGES,
        status="running",
        timeout_seconds=60,
        deadline_at=now + timedelta(seconds=0.2),
    )
    llm = FakeLLM(delay=30.0)  # would answer long after the deadline
    executor = make_executor(store, llm, heartbeat_seconds=5.0)
    outcome = await asyncio.wait_for(executor.execute("run_1"), 10)
    assert outcome is Outcome.DONE and len(llm.calls) == 1
    assert store.status == "failed" and store.run.error is not None
    assert store.run.error["code"] == "TIMEOUT" and store.run.error["stage"] == "draft"
    assert store.run.stages["draft"].status == "failed"


class NoSlotStore(FakeStore):
    """A store whose concurrency limits are full: a start is refused (NoSlot)."""

    async def write(self, run: RunRecord, *transitions: Transition) -> bool:
        if any(isinstance(t, Started) for t in transitions) and run.state.status == "pending":
            raise NoSlot()
        return await super().write(run, *transitions)


async def test_a_run_refused_a_slot_waits_queued_and_its_job_is_done() -> None:
    store = NoSlotStore({"stages": TWO_STAGES}, new_state())
    llm = FakeLLM()
    assert await make_executor(store, llm).execute("run_1") is Outcome.DONE
    assert store.status == "pending" and store.run.queued_at is not None
    assert store.log == [("Queued", None)] and not llm.calls
