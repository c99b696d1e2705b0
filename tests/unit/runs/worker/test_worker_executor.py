"""Executor logic with fakes: order, resume after a crash, failures, human review, fencing."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.runs.worker.context import AttachmentText, Services
from services.runs.worker.executor import Executor, Outcome, parse_maybe_json
from services.runs.worker.llm_client import ChatResult, LLMError
from services.runs.worker.model import RunRecord, StageError, StageResult
from services.runs.worker.store import should_take


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


class FakeStore:
    """In-memory Store: records what the executor persisted, in order."""

    def __init__(self, run: RunRecord, stage_rows: dict[str, str] | None = None) -> None:
        self.run = run
        self.rows: dict[str, str] = dict(stage_rows or {})  # stage id -> status
        self.results: dict[str, StageResult] = {}
        self.log: list[tuple[str, Any]] = []
        self.owned = True
        self.status = "pending"
        self.error: dict[str, Any] | None = None
        self.result: Any = None
        self.request: dict[str, Any] | None = None

    async def claim(self, run_id: str, worker_id: str) -> RunRecord | None:
        if self.status in ("completed", "failed", "canceled"):
            return None
        self.status = "running"
        fresh = RunRecord(**{**self.run.__dict__, "completed": dict(self.run.completed)})
        fresh.completed = {
            k: self.results[k].output if k in self.results else v
            for k, v in self.run.completed.items()
        }
        return fresh

    async def begin_stage(self, run: RunRecord, worker_id: str, index: int) -> bool:
        sid = run.stages[index]["id"]
        self.log.append(("begin", sid))
        self.rows.setdefault(sid, "running")
        return self.owned

    async def complete_stage(
        self, run: RunRecord, worker_id: str, index: int, result: StageResult
    ) -> bool:
        if not self.owned:
            return False
        sid = run.stages[index]["id"]
        self.log.append(("complete", sid))
        assert self.rows.get(sid) != "completed", "a stage completed twice"
        self.rows[sid] = "completed"
        self.results[sid] = result
        return True

    async def await_input(
        self, run: RunRecord, worker_id: str, index: int, request: dict[str, Any]
    ) -> bool:
        self.status, self.request = "awaiting_input", request
        self.log.append(("await", request["stage"]))
        return self.owned

    async def finish(self, run: RunRecord, worker_id: str, result: Any) -> bool:
        self.status, self.result = "completed", result
        self.log.append(("finish", None))
        return self.owned

    async def fail(
        self, run: RunRecord, worker_id: str, index: int | None, error: StageError
    ) -> bool:
        stage = run.stages[index]["id"] if index is not None else "output"
        self.status = "failed"
        self.error = {"code": error.code, "message": error.message, "stage": stage}
        if error.usage is not None:
            self.results[stage] = error.usage
        self.log.append(("fail", stage))
        return self.owned

    async def complete_and_finish(
        self, run: RunRecord, worker_id: str, index: int, stage_result: StageResult, result: Any
    ) -> bool:
        return await self.complete_stage(run, worker_id, index, stage_result) and await self.finish(
            run, worker_id, result
        )

    async def run_pure(self, run_id: str, worker_id: str, plan: Any) -> bool:
        return False  # every run here goes stage by stage (pure batches: test_pure_runs)

    async def heartbeat(self, run_id: str, worker_id: str) -> bool:
        return self.owned

    async def release(self, run_id: str, worker_id: str) -> None:
        self.log.append(("release", None))


def make_run(stages: list[dict[str, Any]], **extra: Any) -> RunRecord:
    definition = {"stages": stages, **extra.pop("definition", {})}
    return RunRecord(
        id="run_1",
        workflow_id="wf_1",
        user_id="usr_1",
        status="pending",
        input_text=extra.pop("input_text", "hi"),
        params=extra.pop("params", {}),
        attachment_ids=extra.pop("attachment_ids", []),
        human_inputs=extra.pop("human_inputs", {}),
        definition=definition,
        **extra,
    )


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
    store = FakeStore(
        make_run(TWO_STAGES, definition={"output": '{"text": {{ stages.wrap|tojson }}}'})
    )
    llm = FakeLLM()
    assert await make_executor(store, llm).execute("run_1") is Outcome.DONE
    assert store.log == [
        ("begin", "draft"),
        ("complete", "draft"),
        ("complete", "wrap"),
        ("finish", None),
    ]
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
    store = FakeStore(make_run(TWO_STAGES))
    await make_executor(store).execute("run_1")
    assert store.result == store.results["wrap"].output


async def test_resume_skips_completed_and_reruns_started_stage() -> None:
    stages = [
        *TWO_STAGES[:1],
        {"id": "second", "type": "llm", "model": "fake:echo", "prompt": "again"},
        TWO_STAGES[1],
    ]
    run = make_run(stages)
    run.completed = {"draft": "persisted draft"}
    store = FakeStore(run, {"draft": "completed", "second": "running"})
    llm = FakeLLM()
    assert await make_executor(store, llm).execute("run_1") is Outcome.DONE
    assert [c[-1]["content"] for c in llm.calls] == ["again"]  # draft not called again
    assert store.results["wrap"].output == "<persisted draft|persisted draft>"
    assert ("complete", "draft") not in store.log
    assert store.status == "completed"


async def test_llm_failure_fails_the_run_with_the_stage() -> None:
    stages = [{"id": "ask", "type": "llm", "model": "fake:echo", "prompt": "FAIL please"}]
    store = FakeStore(make_run(stages))
    await make_executor(store).execute("run_1")
    assert store.status == "failed"
    assert store.error is not None
    assert store.error["code"] == "LLM_ERROR" and store.error["stage"] == "ask"
    assert "HTTP 500" in store.error["message"]


async def test_template_error_names_the_stage_and_the_problem() -> None:
    stages = [{"id": "t", "type": "template", "template": "{{ stages.missing.output }}"}]
    store = FakeStore(make_run(stages))
    await make_executor(store).execute("run_1")
    assert store.error == {
        "code": "TEMPLATE_ERROR",
        "stage": "t",
        "message": "template: undefined value in template: 'dict object' has no attribute "
        "'missing'",
    }


async def test_output_template_error_fails_with_stage_output() -> None:
    stages = [{"id": "t", "type": "template", "template": "fine"}]
    store = FakeStore(make_run(stages, definition={"output": "{{ nope }}"}))
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
    good = FakeStore(make_run(stages))
    await make_executor(good, FakeLLM({"classify": '```json\n{"label": "bug"}\n```'})).execute("r")
    assert good.result == {"label": "bug"}

    bad = FakeStore(make_run(stages))
    await make_executor(bad, FakeLLM({"classify": '{"label": "other"}'})).execute("r")
    assert bad.error is not None and bad.error["code"] == "LLM_INVALID_OUTPUT"
    assert "at label" in bad.error["message"]
    assert bad.results["c"].cost_micros == 6000  # the tokens were spent: still counted

    prose = FakeStore(make_run(stages))
    await make_executor(prose, FakeLLM({"classify": "it is a bug"})).execute("r")
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
    store = FakeStore(make_run(REVIEW))
    assert await make_executor(store).execute("run_1") is Outcome.DONE
    assert store.status == "awaiting_input"
    assert store.request == {
        "stage": "review",
        "prompt": "Check draft hi",
        "fields": REVIEW[1]["fields"],
        "context": {"stages": {"draft": "draft hi"}},
    }
    assert "final" not in store.results

    resumed = make_run(REVIEW, human_inputs={"review": {"approved": True}})
    resumed.completed = {"draft": "draft hi"}
    store2 = FakeStore(resumed, {"draft": "completed", "review": "running"})
    await make_executor(store2).execute("run_1")
    assert store2.results["review"].output == {"approved": True}
    assert store2.result == "True"
    assert store2.status == "completed"


async def test_cancel_during_a_stage_stops_the_run() -> None:
    stages = [{"id": "slow", "type": "llm", "model": "fake:echo", "prompt": "x"}, TWO_STAGES[1]]
    store = FakeStore(make_run(stages))
    executor = make_executor(store, FakeLLM(delay=0.5), heartbeat_seconds=0.05)

    async def cancel_soon() -> None:
        await asyncio.sleep(0.1)
        store.owned = False  # canceled or taken over: heartbeats now fail

    canceller = asyncio.create_task(cancel_soon())
    assert await executor.execute("run_1") is Outcome.DONE
    await canceller
    assert "slow" not in store.results and store.status == "running"


async def test_heartbeats_report_progress_during_long_stages() -> None:
    stages = [{"id": "slow", "type": "llm", "model": "fake:echo", "prompt": "x"}]
    store = FakeStore(make_run(stages))
    beats: list[int] = []

    async def progress() -> None:
        beats.append(1)

    executor = make_executor(store, FakeLLM(delay=0.3), heartbeat_seconds=0.05)
    await executor.execute("run_1", progress)
    assert len(beats) >= 2 and store.status == "completed"


async def test_stopping_releases_before_the_next_stage() -> None:
    store = FakeStore(make_run(TWO_STAGES))
    executor = make_executor(store)
    executor.stopping.set()
    assert await executor.execute("run_1") is Outcome.RELEASED
    assert store.log == [("release", None)]


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
    store = FakeStore(make_run(stages, attachment_ids=["att_1"]))
    llm = FakeLLM()
    await make_executor(store, llm).execute("run_1")
    prompt = llm.calls[0][-1]["content"]
    assert prompt.startswith("att_1.csv:a,b")
    assert "[... truncated: att_1.csv has 2000 characters" in prompt
    assert len(prompt) < 2000


NOW = datetime(2026, 1, 1, tzinfo=UTC)


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
    full = {
        "worker_id": None,
        "heartbeat_at": None,
        "human_input_request": None,
        "human_inputs": {},
        **row,
    }
    assert should_take(full, "w1", 10.0, NOW) is take


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
    store = FakeStore(make_run(stages))
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
    """Every run id is a run of its own with the same stages."""

    async def claim(self, run_id: str, worker_id: str) -> RunRecord | None:
        self.status = "pending"
        run = await super().claim(run_id, worker_id)
        return None if run is None else replace(run, id=run_id)

    async def complete_stage(
        self, run: RunRecord, worker_id: str, index: int, result: StageResult
    ) -> bool:
        self.log.append(("complete", run.id))  # the stage rows are per run: not shared
        return True


async def test_at_most_concurrency_runs_go_stage_by_stage_and_waiting_jobs_stay_alive() -> None:
    llm = CountingLLM()
    executor = make_executor(
        ManyRuns(make_run(TWO_STAGES)), llm, concurrency=2, job_keepalive_seconds=0.03
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
        store = FakeStore(make_run(stages))
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
    store = FakeStore(make_run([*TWO_STAGES[:1], {"id": "t", "type": "template", "template": "x"}]))
    assert await make_executor(store).execute("run_1") is Outcome.RETRY
    assert store.status == "running" and store.error is None
    assert store.log[-1] == ("release", None)


async def test_an_http_stage_whose_header_cannot_be_sent_fails_the_run() -> None:
    stages = [
        {
            "id": "call",
            "type": "http",
            "url": "http://127.0.0.1:9/",
            "headers": {"X-Note": "{{ input_text }}"},
        }
    ]
    store = FakeStore(make_run(stages, input_text="a\r\nX-Injected: 1"))
    assert await make_executor(store).execute("run_1") is Outcome.DONE
    assert store.error is not None
    assert (store.error["code"], store.error["stage"]) == ("HTTP_INVALID_REQUEST", "call")
