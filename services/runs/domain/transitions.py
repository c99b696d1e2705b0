"""What a run can do: its state, its transitions, and where each event goes.

A run's state is its `runs` row and its `stage_results` rows (`RunState`). It changes only
through the transitions below. Each is a typed value whose `apply` changes the state and
yields what the change emits: events (snapshotted as the run is at that point) and jobs
for the workers. `advance` applies a list of them in order and answers the `Change` that
services.runs.store.writer persists in one statement: the new row, the stage rows, the
events with their outbox rows and webhook deliveries (routed in `route`), the jobs.

Every change names the row version it was computed from (`RunState.version`); the writer
applies it only if the row is still at that version, so two writers (a worker and a
cancel, two workers after a takeover) never both apply a change to one state. That fence
is what makes a stage count once.

No I/O here: the API (domain/create.py, domain/service.py) and the worker
(worker/executor.py) decide *which* transition; this module says *what it does*.
"""

import copy
import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.runs.domain.snapshot import run_snapshot
from weftcore import jsontext
from weftcore.context import request_id_var
from weftcore.events import (
    BILLING_EVENTS,
    RUN_AWAITING_INPUT,
    RUN_CANCELED,
    RUN_COMPLETED,
    RUN_CREATED,
    RUN_FAILED,
    RUN_STARTED,
    STAGE_COMPLETED,
    STAGE_STARTED,
    TERMINAL_STATUSES,
    WEBHOOK_EVENTS,
    RunEvent,
)
from weftcore.ids import iso, new_id
from weftcore.nats import JOBS_SUBJECT, billing_subject, event_subject
from weftcore.tracing import traceparent


class IllegalTransition(Exception):
    """The transition does not apply to the run in its current status (a bug, or a
    state read before someone else changed it)."""


# ---- state ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StageRow:
    """One `stage_results` row. Never changed in place: a transition puts a new one in
    `RunState.stages` (so a change finds the rows it touched by identity)."""

    stage_index: int
    stage_id: str
    stage_type: str
    status: str  # running | completed | failed
    started_at: datetime
    output: Any = None
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    duration_ms: int = 0
    completed_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "StageRow":
        return cls(**{name: row[name] for name in _STAGE_COLUMNS})


@dataclass
class RunState:
    """One `runs` row (and its stage rows) as the domain sees it."""

    id: str
    workflow_id: str
    workflow_version: int
    user_id: str
    team_id: str
    account_id: str
    input_text: str
    params: dict[str, Any]
    attachment_ids: list[str]
    webhook_url: str | None
    holds_reservation: bool
    created_at: datetime
    status: str = "pending"
    result: Any = None
    error: dict[str, Any] | None = None
    human_input_request: dict[str, Any] | None = None
    human_inputs: dict[str, Any] = field(default_factory=dict)
    cost_micros: int = 0
    worker_id: str | None = None
    heartbeat_at: datetime | None = None  # read only: the writer and heartbeats set it
    started_at: datetime | None = None
    completed_at: datetime | None = None
    rerun_of: str | None = None  # the run this one reruns
    timeout_seconds: int | None = None  # from its start to its end; None: no limit
    deadline_at: datetime | None = None  # its start + timeout_seconds, once started
    priority: int = 5  # 0-9: among runs waiting for a slot, the higher starts first
    concurrency_limit: int | None = None  # its workflow's runs holding a slot at most
    account_concurrency_limit: int | None = None  # its account's, by plan
    queued_at: datetime | None = None  # refused a slot: waiting for the dispatcher
    version: int = 0  # the row's version: 0 until the run is written
    next_event_seq: int = 1
    stages: dict[str, StageRow] = field(default_factory=dict)  # by stage id

    @classmethod
    def from_rows(
        cls, row: Mapping[str, Any], stage_rows: Sequence[Mapping[str, Any]] = ()
    ) -> "RunState":
        state = cls(**{name: row[name] for name in _RUN_COLUMNS})
        state.params = dict(state.params or {})
        state.attachment_ids = list(state.attachment_ids or [])
        state.human_inputs = dict(state.human_inputs or {})
        state.stages = {r["stage_id"]: StageRow.from_row(r) for r in stage_rows}
        return state

    def copy(self) -> "RunState":
        """A copy to change (stage rows are shared: they are replaced, never changed)."""
        new = copy.copy(self)
        new.stages = dict(self.stages)
        return new

    def snapshot(self) -> dict[str, Any]:
        """The public run object (domain/snapshot.py) as the run is now."""
        return run_snapshot(vars(self), [vars(s) for s in self.stages.values()])

    def limited(self) -> bool:
        """Whether starting it takes a slot of a concurrency limit."""
        return self.concurrency_limit is not None or self.account_concurrency_limit is not None

    def stage_cost(self) -> int:
        return sum(s.cost_micros for s in self.stages.values() if s.status != "running")


_STAGE_COLUMNS = tuple(f.name for f in dataclasses.fields(StageRow))
_RUN_COLUMNS = tuple(f.name for f in dataclasses.fields(RunState) if f.name != "stages")


# ---- what a transition emits ---------------------------------------------------------


@dataclass(frozen=True)
class Emit:
    """An event of the run, snapshotted as the run is when it is yielded."""

    type: str
    stage: str | None = None


@dataclass(frozen=True)
class Enqueue:
    """A job for the workers (`msg_id`: JetStream's dedupe key; None: a new job)."""

    msg_id: str | None = None


Emitted = Iterator[Emit | Enqueue]


# ---- transitions ---------------------------------------------------------------------


def _require(run: RunState, *statuses: str) -> None:
    if run.status not in statuses:
        raise IllegalTransition(f"run {run.id} is {run.status}, not {' or '.join(statuses)}")


@dataclass(frozen=True)
class Created:
    """A new `pending` run, its `run.created` event and its first job. A rerun starts
    with the stage rows it inherits (completed, their outputs copied, at no cost)."""

    inherited: tuple[StageRow, ...] = ()

    def apply(self, run: RunState, at: datetime) -> Emitted:
        if run.version:
            raise IllegalTransition(f"run {run.id} exists already")
        run.created_at = at
        for row in self.inherited:
            run.stages[row.stage_id] = row
        yield Emit(RUN_CREATED)
        yield Enqueue(f"job-{run.id}-0")


@dataclass(frozen=True)
class Started:
    """A worker takes the run: `run.started` the first time; a resume (after a crash,
    a release or an answered review) only changes hands."""

    worker_id: str

    def apply(self, run: RunState, at: datetime) -> Emitted:
        _require(run, "pending", "running", "awaiting_input")
        first = run.started_at is None
        run.status, run.worker_id, run.human_input_request = "running", self.worker_id, None
        run.queued_at = None
        if first:
            run.started_at = at
            if run.timeout_seconds is not None:
                run.deadline_at = at + timedelta(seconds=run.timeout_seconds)
            yield Emit(RUN_STARTED)


@dataclass(frozen=True)
class Released:
    """The worker lets go of a running run (shutdown, or a dependency outage) so that
    another may resume it."""

    def apply(self, run: RunState, at: datetime) -> Emitted:
        _require(run, "running")
        run.worker_id = None
        yield from ()


@dataclass(frozen=True)
class Requeued:
    """Recovery: a stuck run (dead worker, lost job) gets a new job; so does a run
    waiting for a slot once the dispatcher sees one free (it leaves the queue)."""

    def apply(self, run: RunState, at: datetime) -> Emitted:
        _require(run, "pending", "running")
        run.worker_id, run.queued_at = None, None
        yield Enqueue()


@dataclass(frozen=True)
class Queued:
    """A pending run was refused a slot of its concurrency limits: it waits, without a
    job, for the dispatcher (worker/dispatch.py) to requeue it in its turn."""

    def apply(self, run: RunState, at: datetime) -> Emitted:
        _require(run, "pending")
        run.queued_at = run.queued_at or at
        yield from ()


@dataclass(frozen=True)
class StageRef:
    """A stage of the run's definition: its position, id and type."""

    index: int
    id: str
    type: str


@dataclass(frozen=True)
class StageResult:
    """What a finished stage persists: its output and what it cost."""

    output: Any
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    duration_ms: int = 0


@dataclass(frozen=True)
class StageStarted:
    """A stage with outside effects is claimed before it calls anything outside; a
    stage found `running` (its attempt died) is started again without a second event."""

    stage: StageRef

    def apply(self, run: RunState, at: datetime) -> Emitted:
        _require(run, "running")
        ref = self.stage
        row = run.stages.get(ref.id)
        if row is not None and row.status != "running":
            raise IllegalTransition(f"stage {ref.id} of run {run.id} is {row.status}")
        run.stages[ref.id] = StageRow(ref.index, ref.id, ref.type, "running", at)
        if row is None:
            yield Emit(STAGE_STARTED, ref.id)


def _settle(run: RunState, ref: StageRef, status: str, result: StageResult, at: datetime) -> None:
    started = run.stages[ref.id].started_at if ref.id in run.stages else at
    run.stages[ref.id] = StageRow(
        ref.index,
        ref.id,
        ref.type,
        status,
        started,
        result.output,
        result.model,
        result.input_tokens,
        result.output_tokens,
        result.cost_micros,
        result.duration_ms,
        at,
    )
    run.cost_micros = run.stage_cost()


@dataclass(frozen=True)
class StageCompleted:
    """A stage's output and cost. A stage never claimed (a template: no outside effect)
    starts and completes here."""

    stage: StageRef
    result: StageResult

    def apply(self, run: RunState, at: datetime) -> Emitted:
        if self.stage.id not in run.stages:
            yield from StageStarted(self.stage).apply(run, at)
        _require(run, "running")
        if run.stages[self.stage.id].status != "running":
            raise IllegalTransition(f"stage {self.stage.id} of run {run.id} is settled")
        _settle(run, self.stage, "completed", self.result, at)
        yield Emit(STAGE_COMPLETED, self.stage.id)


@dataclass(frozen=True)
class AwaitingInput:
    """A human_review stage pauses the run with its request."""

    stage: StageRef
    request: dict[str, Any]

    def apply(self, run: RunState, at: datetime) -> Emitted:
        _require(run, "running")
        run.status, run.human_input_request, run.worker_id = "awaiting_input", self.request, None
        yield Emit(RUN_AWAITING_INPUT, self.stage.id)


@dataclass(frozen=True)
class InputSubmitted:
    """The answer to the waiting stage: stored, and a job resumes the run."""

    stage_id: str
    values: dict[str, Any]

    def apply(self, run: RunState, at: datetime) -> Emitted:
        _require(run, "awaiting_input")
        run.human_inputs = {**run.human_inputs, self.stage_id: self.values}
        run.status, run.human_input_request = "running", None
        yield Enqueue()


@dataclass(frozen=True)
class Completed:
    """The run's result; it is final."""

    result: Any

    def apply(self, run: RunState, at: datetime) -> Emitted:
        _require(run, "running")
        run.status, run.result, run.error = "completed", self.result, None
        run.completed_at, run.worker_id = at, None
        yield Emit(RUN_COMPLETED)


@dataclass(frozen=True)
class Failed:
    """The run fails with `code` and `message`, naming its stage ("output" when its
    output failed). The failed stage keeps a row with the usage it was charged (an LLM
    answer that broke its schema was still paid for)."""

    code: str
    message: str
    stage: StageRef | None = None
    usage: StageResult | None = None

    def apply(self, run: RunState, at: datetime) -> Emitted:
        _require(run, "running")
        stage_id = "output"
        if self.stage is not None:
            stage_id = self.stage.id
            usage = dataclasses.replace(self.usage or StageResult(None), output=None)
            _settle(run, self.stage, "failed", usage, at)
        run.status, run.completed_at, run.worker_id = "failed", at, None
        run.error = {"code": self.code, "message": self.message, "stage": stage_id}
        yield Emit(RUN_FAILED, stage_id)


TIMEOUT = "TIMEOUT"  # the run's `error.code` once it ran over its timeout_seconds


@dataclass(frozen=True)
class TimedOut:
    """The run ran over its `timeout_seconds`: it fails with TIMEOUT, naming the stage
    that was running (stopped: its row fails, with no cost recorded) or waiting for
    input. Its worker, which stops the stage, writes it; recovery does for a run no
    worker holds (waiting for input, or its worker gone)."""

    def apply(self, run: RunState, at: datetime) -> Emitted:
        _require(run, "pending", "running", "awaiting_input")
        running = [row for row in run.stages.values() if row.status == "running"]
        stage_id = None
        for row in running:
            ref = StageRef(row.stage_index, row.stage_id, row.stage_type)
            _settle(run, ref, "failed", StageResult(None), at)
            stage_id = row.stage_id
        run.status, run.completed_at, run.worker_id = "failed", at, None
        run.human_input_request = None
        message = f"The run ran over its timeout of {run.timeout_seconds} seconds."
        run.error = {"code": TIMEOUT, "message": message, "stage": stage_id}
        yield Emit(RUN_FAILED, stage_id)


@dataclass(frozen=True)
class Canceled:
    """Canceled by its owner; a terminal run cannot be."""

    def apply(self, run: RunState, at: datetime) -> Emitted:
        if run.status in TERMINAL_STATUSES:
            raise IllegalTransition(f"run {run.id} is already {run.status}")
        run.status, run.human_input_request, run.worker_id = "canceled", None, None
        run.completed_at = at
        yield Emit(RUN_CANCELED)


Transition = (
    Created
    | Started
    | Released
    | Requeued
    | Queued
    | StageStarted
    | StageCompleted
    | AwaitingInput
    | InputSubmitted
    | Completed
    | Failed
    | TimedOut
    | Canceled
)


# ---- what gets written ---------------------------------------------------------------


@dataclass(frozen=True)
class OutboxMessage:
    """A row of the outbox: published to JetStream on `subject` after the commit."""

    subject: str
    msg_id: str
    payload: bytes | None  # None: the event `msg_id`'s JSON (not sent twice)
    trace: str = ""  # the W3C traceparent it was written in ("": none), its NATS header


@dataclass(frozen=True)
class WebhookDelivery:
    event_id: str
    event_type: str
    url: str
    trace: str = ""  # the traceparent the delivery continues


@dataclass(frozen=True)
class Change:
    """A run's new state and everything its transitions emitted, to be written together
    if the row is still at `expected_version` (None: a new run)."""

    run: RunState
    expected_version: int | None
    at: datetime  # when it happened: the events' time
    stages: tuple[StageRow, ...]  # the stage rows it added or changed
    new_stages: frozenset[str]  # the ids of those it added
    events: tuple[RunEvent, ...]
    outbox: tuple[OutboxMessage, ...]  # in publish order
    webhooks: tuple[WebhookDelivery, ...]
    # A pending run starts (or ends at once): it needs a slot of its limits, which the
    # writer checks and takes in the same statement (refused: nothing is written).
    takes_slot: bool = False


def route(
    event: RunEvent, run: RunState, trace: str = ""
) -> tuple[list[OutboxMessage], WebhookDelivery | None]:
    """Where an event goes: always its subject on the events stream; billing's copy for
    the events billing acts on of a run that holds a reservation; the run's webhook_url
    for the events delivered there. `trace`: the traceparent they all continue."""
    messages = [OutboxMessage(event_subject(run.id, event.type), event.id, None, trace)]
    if run.holds_reservation and event.type in BILLING_EVENTS:
        messages.append(OutboxMessage(billing_subject(run.id, event.type), event.id, None, trace))
    hook = None
    if run.webhook_url and event.type in WEBHOOK_EVENTS:
        hook = WebhookDelivery(event.id, event.type, run.webhook_url, trace)
    return messages, hook


def job_payload(run_id: str) -> bytes:
    """A job for the workers: the run, and the id of the request that queued it (the
    worker logs with it, so one request's lines can be followed into the worker)."""
    job = {"run_id": run_id, "request_id": request_id_var.get()}
    return json.dumps(job, separators=(",", ":")).encode()


def event_json(event: RunEvent) -> str:
    """The event as stored and published (RunEvent.to_json's document)."""
    return jsontext.dumps(
        {
            "id": event.id,
            "type": event.type,
            "run_id": event.run_id,
            "seq": event.seq,
            "created_at": event.created_at,
            "run": event.run,
            "stage": event.stage,
        }
    )


def advance(run: RunState, transitions: Sequence[Transition], at: datetime) -> Change:
    """Apply `transitions` in order to a copy of `run`, at time `at`: the change to
    write. `run` itself is untouched (the write may not happen)."""
    new = run.copy()
    events: list[RunEvent] = []
    outbox: list[OutboxMessage] = []
    webhooks: list[WebhookDelivery] = []
    trace = traceparent()  # what the messages continue: the request's or the job's
    for transition in transitions:
        for emitted in transition.apply(new, at):
            if isinstance(emitted, Enqueue):
                msg_id = emitted.msg_id or new_id("job")
                outbox.append(OutboxMessage(JOBS_SUBJECT, msg_id, job_payload(new.id), trace))
                continue
            event = RunEvent(
                id=new_id("evt"),
                type=emitted.type,
                run_id=new.id,
                seq=new.next_event_seq,
                created_at=iso(at),
                run=new.snapshot(),
                stage=emitted.stage,
            )
            new.next_event_seq += 1
            events.append(event)
            messages, hook = route(event, new, trace)
            outbox.extend(messages)
            if hook is not None:
                webhooks.append(hook)
    expected = run.version or None
    new.version = run.version + 1
    return Change(
        run=new,
        expected_version=expected,
        at=at,
        stages=tuple(s for k, s in new.stages.items() if run.stages.get(k) is not s),
        new_stages=frozenset(new.stages.keys() - run.stages.keys()),
        events=tuple(events),
        outbox=tuple(outbox),
        webhooks=tuple(webhooks),
        takes_slot=run.status == "pending"
        and new.status not in ("pending", "canceled")
        and new.limited(),
    )
