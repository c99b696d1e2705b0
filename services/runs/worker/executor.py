"""Executing one run job: claim the run, run its remaining stages in order, persist each.

Exactly-once for stages, at-least-once for jobs: a job may be delivered again (crash,
ack lost, recovery), so everything here is safe to repeat.

- Every change is a list of transitions (services/runs/domain/transitions.py) written in
  one statement, only if the run is still at the version this worker read: a run
  canceled or taken over refuses the write, and this worker stops (LostRun).
- A stage with outside effects is *claimed* (stage_results row `running`, its
  `stage.started` event) before it calls anything outside. Its result, cost and
  `stage.completed` event commit together (with the run's end, for the last stage).
  That write succeeds once, so a stage is counted once.
- A stage found `running` on redelivery was started by an attempt that died before
  committing: it is run again. Its earlier LLM call (if any) never completed for us and
  is neither recorded nor billed (the provider may have billed it; we cannot know).
- Completed stages are skipped; their persisted outputs feed later stages.
- Heartbeats during a stage check that this worker still owns the run; a canceled run,
  or one another worker took over, stops here.
- A run of template stages only is computed whole and written in one change.
- A stage that raises something unexpected fails its run (INTERNAL, logged with the run
  id) unless it is an outage of a dependency (faults.py), which is retried: a bad input
  or a bug must not send one job round the redelivery loop forever.
"""

import asyncio
import enum
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from services.runs.domain.transitions import (
    AwaitingInput,
    Completed,
    Failed,
    Queued,
    Released,
    StageCompleted,
    StageRef,
    StageResult,
    StageStarted,
    Started,
    TimedOut,
    Transition,
)
from services.runs.worker.context import AttachmentText, Delta, Services, template_context
from services.runs.worker.faults import is_outage
from services.runs.worker.llm_client import OnDelta
from services.runs.worker.model import (
    ATTACHMENT_ERROR,
    INTERNAL,
    OUTPUT_INVALID,
    TEMPLATE_ERROR,
    AwaitInput,
    NoSlot,
    RunRecord,
    StageError,
    TransientError,
)
from services.runs.worker.stages import http, human_review, llm, table, template
from services.runs.worker.store import should_take
from services.runs.worker.templating import TemplateRenderError, render
from weftcore import tracing
from weftcore.batching import Batcher
from weftcore.ids import utcnow
from weftcore.logs import error_text

log = logging.getLogger(__name__)

# Jobs looked at together (and pure runs written together) at most.
WHOLE_BATCH = 128
# Stage types with no outside effect or cost: claimed and completed in one transaction.
PURE_STAGES = frozenset({"template"})


class Outcome(enum.Enum):
    DONE = "done"  # the run is terminal, paused or someone else's: ack
    RELEASED = "released"  # we stopped (shutdown) and released the run: redeliver soon
    RETRY = "retry"  # a dependency failed: redeliver later


class Store(Protocol):
    """The run's persistent state (services.runs.worker.store.PgStore; a dict in unit
    tests)."""

    async def load(self, run_id: str) -> RunRecord | None:
        """The run as it is now; None for an unknown run."""

    async def load_many(self, run_ids: Sequence[str]) -> list[RunRecord | None]:
        """`load` of each, at once."""

    async def write(self, run: RunRecord, *transitions: Transition) -> bool:
        """Apply and persist `transitions` together, only if the run is still as it was
        read (then `run.state` is the new state); False otherwise. Raises NoSlot when they
        start a run that a concurrency limit keeps waiting."""

    async def write_many(self, changes: Sequence[tuple[RunRecord, list[Transition]]]) -> list[bool]:
        """`write` of each (of distinct runs), at once (refused a slot: False)."""

    async def heartbeat(self, run_id: str, worker_id: str) -> bool:
        """The worker is alive and still owns the running run; False: it does not."""


Heartbeat = Callable[[], Awaitable[None]]


class LostRun(Exception):
    """The run was canceled or taken over while we worked on it."""


class OutOfTime(Exception):
    """The run's deadline passed while a stage ran; the stage was stopped."""


def _seconds_left(deadline: datetime | None) -> float | None:
    return None if deadline is None else (deadline - utcnow()).total_seconds()


class Executor:
    def __init__(
        self,
        store: Store,
        services: Services,
        worker_id: str,
        *,
        stale_seconds: float = 30.0,
        heartbeat_seconds: float = 2.0,
        attachment_max_chars: int = 200_000,
        concurrency: int = 16,
        job_keepalive_seconds: float = 10.0,
        after_run: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.services = services
        self.worker_id = worker_id
        # A running run whose heartbeat is older than this may be taken over.
        self.stale_seconds = stale_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.attachment_max_chars = attachment_max_chars
        # Runs executed stage by stage at once (LLM, HTTP and review stages): the guard
        # on model servers. Template-only runs are computed whole and do not count.
        self._concurrency = concurrency
        self._stepwise_slots = asyncio.Semaphore(concurrency)
        self._stepwise = 0  # runs executing stage by stage or waiting to
        # A job waiting for a slot tells JetStream it is alive this often (< ack_wait).
        self.job_keepalive_seconds = job_keepalive_seconds
        self.stopping = asyncio.Event()  # set on SIGTERM: finish the stage, then release
        # Called once a job is through: a slot of a concurrency limit may be free
        # (worker/dispatch.py gives the waiting runs their turn).
        self._after_run = after_run
        # Runs executing in this process: a duplicate job for one of them (recovery,
        # redelivery) must not start a second executor that shares our worker_id.
        self._in_flight: set[str] = set()
        # The first look at each job, shared by the jobs of the moment (_run_whole).
        self._whole: Batcher[str, RunRecord | bool] = Batcher(
            self._run_whole, max_batch=WHOLE_BATCH, max_in_flight=1
        )

    async def execute(self, run_id: str, progress: Heartbeat | None = None) -> Outcome:
        """Run (or resume) the run; the outcome tells the consumer how to settle the job."""
        if run_id in self._in_flight:
            return Outcome.DONE
        self._in_flight.add(run_id)
        try:
            return await self._execute(run_id, progress)
        finally:
            self._in_flight.discard(run_id)
            self._after_run()

    async def _execute(self, run_id: str, progress: Heartbeat | None) -> Outcome:
        look = await self._whole.call(run_id)
        if look is True:
            return Outcome.DONE
        self._stepwise += 1
        try:
            await self._take_stepwise_slot(progress)
            try:
                read = look if isinstance(look, RunRecord) else None
                return await self._execute_stepwise(run_id, progress, read)
            finally:
                self._stepwise_slots.release()
        finally:
            self._stepwise -= 1

    async def _run_whole(self, run_ids: list[str]) -> list[RunRecord | bool | BaseException]:
        """The jobs of the moment, read at once: runs with nothing to do are done, and
        pending runs of pure stages only are computed whole and written in one statement
        (True). The rest go stage by stage: a pending run with the record read here (its
        claim is fenced by the row's version, and nothing but a versioned write changes a
        pending run), any other run with False (read again once it has a slot)."""
        handled: dict[str, RunRecord | bool] = {}
        planned: list[tuple[RunRecord, list[Transition]]] = []
        for run_id, run in zip(run_ids, await self.store.load_many(run_ids), strict=True):
            if run is None or not self._should_take(run):
                handled[run_id] = True
            elif run.state.status != "pending":
                handled[run_id] = False
            elif not _is_pure(run):
                handled[run_id] = run
            else:
                transitions = await self._pure_plan(run)
                if transitions is None:
                    handled[run_id] = False  # its plan filled run.completed: read it again
                else:
                    planned.append((run, transitions))
        written = await self.store.write_many(planned) if planned else []
        for (run, _), ok in zip(planned, written, strict=True):
            handled[run.id] = ok  # not written: the run moved on, the long way reads it again
        return [handled[run_id] for run_id in run_ids]

    async def close(self) -> None:
        """Finish the batch under way (Batcher.close)."""
        await self._whole.close()

    def _should_take(self, run: RunRecord) -> bool:
        return should_take(run.state, self.worker_id, self.stale_seconds, run.loaded_at)

    def stepwise_room(self) -> int:
        """How many more runs could start stage by stage now. The consumer fetches no
        more than this, so LLM jobs queue in JetStream (visible as lag, free for other
        workers to take) rather than inside a busy worker."""
        return self._concurrency - self._stepwise

    async def _take_stepwise_slot(self, progress: Heartbeat | None) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stepwise_slots.acquire(), self.job_keepalive_seconds)
                return
            except TimeoutError:
                if progress is None:
                    continue
                try:
                    await progress()  # still queued here: not for redelivery elsewhere
                except Exception:  # NATS down: a redelivery finds the run taken or done
                    log.debug("in_progress failed", exc_info=True)

    async def _claim(self, run_id: str, read: RunRecord | None) -> RunRecord | None:
        """Take the run for this worker, starting from the record `read` if any (a
        pending run read for this job). A write that loses a race (the run moved on
        while the job waited) reads again, a few times."""
        for _ in range(3):
            run, read = read or await self.store.load(run_id), None
            if run is None or not self._should_take(run):
                return None
            try:
                if await self.store.write(run, Started(self.worker_id)):
                    return run
            except NoSlot:
                # It waits, jobless, for the dispatcher to give it a job in its turn.
                await self.store.write(run, Queued())
                return None
        log.warning("run kept changing; leaving it to a later job", extra={"run_id": run_id})
        return None

    async def _execute_stepwise(
        self, run_id: str, progress: Heartbeat | None, read: RunRecord | None
    ) -> Outcome:
        run = await self._claim(run_id, read)
        if run is None:
            return Outcome.DONE
        try:
            return await self._stages(run, progress)
        except LostRun:
            log.info("run canceled or taken over; stopping", extra={"run_id": run_id})
            return Outcome.DONE
        except OutOfTime:
            log.info("run timed out", extra={"run_id": run_id})
            await self.store.write(run, TimedOut())  # refused: someone else ended it
            return Outcome.DONE
        except TransientError as exc:
            log.warning(
                "transient failure, will retry", extra={"run_id": run_id, "error": error_text(exc)}
            )
            await self.store.write(run, Released())
            return Outcome.RETRY

    async def _write(self, run: RunRecord, *transitions: Transition) -> None:
        if not await self.store.write(run, *transitions):
            raise LostRun()

    async def _stages(self, run: RunRecord, progress: Heartbeat | None) -> Outcome:
        attachments: list[AttachmentText] | None = None
        last = len(run.stages) - 1
        deadline = run.state.deadline_at
        for index, stage in enumerate(run.stages):
            ref = run.stage(index)
            if ref.id in run.completed:
                continue
            left = _seconds_left(deadline)
            if left is not None and left <= 0:
                raise OutOfTime()
            if self.stopping.is_set():
                await self.store.write(run, Released())
                return Outcome.RELEASED
            if attachments is None:
                loaded = await self._attachments(run)
                if isinstance(loaded, StageError):
                    await self._fail(run, ref, loaded)
                    return Outcome.DONE
                attachments = loaded
            context = template_context(run, attachments)
            if ref.type not in PURE_STAGES:
                await self._write(run, StageStarted(ref))
            began = time.monotonic()
            try:
                outcome = await self._with_heartbeat(
                    run.id,
                    progress,
                    self._guarded_stage(
                        stage, run, context, attachments, self._streamer(run, ref.id)
                    ),
                    deadline,
                )
            except StageError as exc:
                await self._fail(run, ref, exc)
                return Outcome.DONE
            if isinstance(outcome, AwaitInput):
                await self._write(run, AwaitingInput(ref, outcome.request))
                return Outcome.DONE
            if not outcome.duration_ms:
                elapsed = int((time.monotonic() - began) * 1000)
                outcome = replace(outcome, duration_ms=elapsed)
            run.completed[ref.id] = outcome.output
            if index == last:  # the stage and the run's end, written together
                await self._write(run, StageCompleted(ref, outcome), self._end(run, attachments))
                return Outcome.DONE
            await self._write(run, StageCompleted(ref, outcome))
        await self._write(run, self._end(run, attachments or []))
        return Outcome.DONE

    def _end(self, run: RunRecord, attachments: list[AttachmentText]) -> Completed | Failed:
        """The run's end once its stages completed: its output, or the output's failure."""
        try:
            return Completed(self._result(run, attachments))
        except StageError as exc:
            self._log_failure(run, None, exc)
            return Failed(exc.code, exc.message)

    async def _pure_plan(self, run: RunRecord) -> list[Transition] | None:
        """A pending run of pure stages only (no attachments to fetch either), computed
        start to finish: its transitions. None when it is not such a run, or when a stage
        or the output fails: the step-by-step path then records the failure."""
        if not _is_pure(run):
            return None
        transitions: list[Transition] = [Started(self.worker_id)]
        try:
            for index, stage in enumerate(run.stages):
                began = time.monotonic()
                outcome = await self._guarded_stage(stage, run, template_context(run, []), [])
                assert isinstance(outcome, StageResult)  # pure stages never await input
                elapsed = int((time.monotonic() - began) * 1000)
                outcome = replace(outcome, duration_ms=outcome.duration_ms or elapsed)
                transitions.append(StageCompleted(run.stage(index), outcome))
                run.completed[str(stage["id"])] = outcome.output
            transitions.append(Completed(self._result(run, [])))
        except StageError:
            return None
        return transitions

    def _streamer(self, run: RunRecord, stage: str) -> OnDelta:
        """Where the running stage's tokens go: numbered after the run's last event (the
        stage's stage.started), so a client resumes between them (services.runs.domain.
        watch). Never written to Postgres: the stage's output is, once complete."""
        seq, numbers = run.state.next_event_seq - 1, itertools.count(1)

        async def on_delta(text: str) -> None:
            await self.services.deltas.publish(Delta(run.id, seq, next(numbers), stage, text))

        return on_delta

    async def _guarded_stage(
        self,
        stage: dict[str, Any],
        run: RunRecord,
        context: dict[str, Any],
        attachments: list[AttachmentText],
        on_delta: OnDelta | None = None,
    ) -> StageResult | AwaitInput:
        """`_run_stage`, with anything unexpected turned into a stage failure, or into a
        retry when it is an outage (faults.py)."""
        try:
            attributes = {"weft.run_id": run.id, "weft.stage.type": str(stage.get("type"))}
            with tracing.span(f"stage {stage.get('id')}", attributes):
                return await self._run_stage(stage, run, context, attachments, on_delta)
        except (StageError, TransientError):
            raise
        except Exception as exc:
            stage_id = str(stage.get("id"))
            if is_outage(exc):
                raise TransientError(f"stage {stage_id}: {type(exc).__name__}: {exc}") from exc
            log.exception(
                "stage crashed; failing the run",
                extra={"run_id": run.id, "stage": stage_id, "error_type": type(exc).__name__},
            )
            raise StageError(
                INTERNAL,
                f"the stage failed with an internal error ({type(exc).__name__}).",
            ) from None

    async def _run_stage(
        self,
        stage: dict[str, Any],
        run: RunRecord,
        context: dict[str, Any],
        attachments: list[AttachmentText],
        on_delta: OnDelta | None = None,
    ) -> StageResult | AwaitInput:
        kind = stage.get("type")
        if kind == "template":
            return await template.run(stage, context)
        if kind == "llm":
            return await llm.run(stage, context, attachments, self.services, on_delta)
        if kind == "table":
            return await table.run(stage, context["params"], attachments)
        if kind == "http":
            return await http.run(stage, context, self.services)
        if kind == "human_review":
            return human_review.run(stage, run, context)
        raise StageError(INTERNAL, f"unknown stage type {kind!r}")

    async def _with_heartbeat(
        self,
        run_id: str,
        progress: Heartbeat | None,
        work: Awaitable[Any],
        deadline: datetime | None = None,
    ) -> Any:
        """Await `work` while telling JetStream and the database we are alive.

        If the run is canceled or taken over meanwhile (LostRun), or its `deadline`
        passes (OutOfTime), the work is cancelled: an LLM or HTTP call in flight is cut."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                wait = self.heartbeat_seconds
                left = _seconds_left(deadline)
                if left is not None:
                    if left <= 0:
                        task.cancel()
                        raise OutOfTime()
                    wait = min(wait, left)
                done, _ = await asyncio.wait({task}, timeout=wait)
                if done:
                    return task.result()
                if left is not None and wait == left:
                    continue  # the deadline, not a heartbeat, is due
                if progress is not None:
                    try:
                        await progress()
                    except Exception:  # NATS down: the DB heartbeat still protects the run
                        log.debug("in_progress failed", exc_info=True)
                if not await self.store.heartbeat(run_id, self.worker_id):
                    task.cancel()
                    raise LostRun()
        finally:
            if not task.done():
                task.cancel()

    async def _attachments(self, run: RunRecord) -> list[AttachmentText] | StageError:
        if not run.attachment_ids:
            return []
        try:
            return await self.services.read_text(run.user_id, run.attachment_ids)
        except TransientError:
            raise
        except LookupError as exc:
            return StageError(ATTACHMENT_ERROR, f"attachment not readable: {exc}")

    def _result(self, run: RunRecord, attachments: list[AttachmentText]) -> Any:
        """The run's result (its `output` template, else the last stage's output),
        checked against the workflow's `output_schema` when it declares one."""
        result = self._rendered_result(run, attachments)
        schema = run.definition.get("output_schema")
        if schema is not None:
            error = best_match(Draft202012Validator(schema).iter_errors(result))
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                shown = "empty" if result in (None, "", [], {}) else "unexpected"
                raise StageError(
                    OUTPUT_INVALID,
                    f"{shown} result: it does not match the workflow's output_schema at"
                    f" {where}: {error.message}",
                )
        return result

    def _rendered_result(self, run: RunRecord, attachments: list[AttachmentText]) -> Any:
        source = run.definition.get("output")
        if not source:
            last = run.stages[-1] if run.stages else None
            return run.completed.get(str(last["id"])) if last else None
        try:
            text = render(str(source), template_context(run, attachments))
        except TemplateRenderError as exc:
            raise StageError(TEMPLATE_ERROR, f"output: {exc.message}") from None
        except Exception as exc:  # see _guarded_stage: never a redelivery loop
            log.exception("output crashed; failing the run", extra={"run_id": run.id})
            raise StageError(
                INTERNAL, f"the output failed with an internal error ({type(exc).__name__})."
            ) from None
        return parse_maybe_json(text)

    async def _fail(self, run: RunRecord, stage: StageRef, error: StageError) -> None:
        self._log_failure(run, stage, error)
        await self._write(run, Failed(error.code, error.message, stage, error.usage))

    def _log_failure(self, run: RunRecord, stage: StageRef | None, error: StageError) -> None:
        log.info(
            "run failed",
            extra={
                "run_id": run.id,
                "code": error.code,
                "stage": stage.id if stage else "output",
                "error": error.message,
            },
        )


def _is_pure(run: RunRecord) -> bool:
    """Only pure stages and no attachments to fetch: computed whole, written at once."""
    return (
        bool(run.stages)
        and not run.attachment_ids
        and all(str(stage.get("type")) in PURE_STAGES for stage in run.stages)
    )


def _no_constants(name: str) -> Any:
    raise ValueError(name)  # NaN/Infinity are not JSON and not storable in jsonb


def parse_maybe_json(text: str) -> Any:
    """The run's result: the rendered output parsed as JSON when it is JSON, else the text."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError:
        return text
