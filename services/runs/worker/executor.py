"""Executing one run job: claim the run, run its remaining stages in order, persist each.

Exactly-once for stages, at-least-once for jobs: a job may be delivered again (crash,
ack lost, recovery), so everything here is safe to repeat.

- A stage is *claimed* in the database (stage_results row, status `running`, plus its
  `stage.started` event) before it calls anything outside. Its result, cost and
  `stage.completed` event commit together, and only while this worker still owns the
  run (`runs.worker_id`) and the row is still `running`. That transition happens once,
  so a stage is counted once.
- A stage found `running` on redelivery was started by an attempt that died before
  committing: it is run again. Its earlier LLM call (if any) never completed for us and
  is neither recorded nor billed (the provider may have billed it; we cannot know).
- Completed stages are skipped; their persisted outputs feed later stages.
- Between stages (and on every heartbeat) the run is re-read: a canceled run, or one
  another worker took over, stops here.
- A stage that raises something unexpected fails its run (INTERNAL, logged with the run
  id) unless it is an outage of a dependency (faults.py), which is retried: a bad input
  or a bug must not send one job round the redelivery loop forever.
"""

import asyncio
import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from services.runs.worker.context import AttachmentText, Services, template_context
from services.runs.worker.faults import is_outage
from services.runs.worker.model import (
    ATTACHMENT_ERROR,
    INTERNAL,
    TEMPLATE_ERROR,
    AwaitInput,
    PurePlan,
    RunRecord,
    StageError,
    StageResult,
    TransientError,
)
from services.runs.worker.stages import http, human_review, llm, table, template
from services.runs.worker.templating import TemplateRenderError, render
from weftcore.logs import error_text

log = logging.getLogger(__name__)

# Stage types with no outside effect or cost: claimed and completed in one transaction.
PURE_STAGES = frozenset({"template"})


class Outcome(enum.Enum):
    DONE = "done"  # the run is terminal, paused or someone else's: ack
    RELEASED = "released"  # we stopped (shutdown) and released the run: redeliver soon
    RETRY = "retry"  # a dependency failed: redeliver later


class Store(Protocol):
    """The run's persistent state (Postgres in production, a dict in unit tests)."""

    async def claim(self, run_id: str, worker_id: str) -> RunRecord | None: ...
    async def begin_stage(self, run: RunRecord, worker_id: str, index: int) -> bool: ...
    async def complete_stage(
        self, run: RunRecord, worker_id: str, index: int, result: StageResult
    ) -> bool: ...
    async def await_input(
        self, run: RunRecord, worker_id: str, index: int, request: dict[str, Any]
    ) -> bool: ...
    async def finish(self, run: RunRecord, worker_id: str, result: Any) -> bool: ...
    async def complete_and_finish(
        self, run: RunRecord, worker_id: str, index: int, stage_result: StageResult, result: Any
    ) -> bool:
        """complete_stage of the last stage and finish, in one transaction."""

    async def run_pure(
        self,
        run_id: str,
        worker_id: str,
        plan: Callable[[RunRecord], Awaitable[PurePlan | None]],
    ) -> bool:
        """Execute a pending run whose stages `plan` computes with no outside effect,
        start to finish at once; False: it is not such a run (go stage by stage)."""

    async def fail(
        self, run: RunRecord, worker_id: str, index: int | None, error: StageError
    ) -> bool: ...
    async def heartbeat(self, run_id: str, worker_id: str) -> bool: ...
    async def release(self, run_id: str, worker_id: str) -> None: ...


Heartbeat = Callable[[], Awaitable[None]]


class LostRun(Exception):
    """The run was canceled or taken over while we worked on it."""


class Executor:
    def __init__(
        self,
        store: Store,
        services: Services,
        worker_id: str,
        *,
        heartbeat_seconds: float = 2.0,
        attachment_max_chars: int = 200_000,
        concurrency: int = 16,
        job_keepalive_seconds: float = 10.0,
    ) -> None:
        self.store = store
        self.services = services
        self.worker_id = worker_id
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
        # Runs executing in this process: a duplicate job for one of them (recovery,
        # redelivery) must not start a second executor that shares our worker_id.
        self._in_flight: set[str] = set()

    async def execute(self, run_id: str, progress: Heartbeat | None = None) -> Outcome:
        """Run (or resume) the run; the outcome tells the consumer how to settle the job."""
        if run_id in self._in_flight:
            return Outcome.DONE
        self._in_flight.add(run_id)
        try:
            return await self._execute(run_id, progress)
        finally:
            self._in_flight.discard(run_id)

    async def _execute(self, run_id: str, progress: Heartbeat | None) -> Outcome:
        if await self.store.run_pure(run_id, self.worker_id, self._pure_plan):
            return Outcome.DONE
        self._stepwise += 1
        try:
            await self._take_stepwise_slot(progress)
            try:
                return await self._execute_stepwise(run_id, progress)
            finally:
                self._stepwise_slots.release()
        finally:
            self._stepwise -= 1

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

    async def _execute_stepwise(self, run_id: str, progress: Heartbeat | None) -> Outcome:
        run = await self.store.claim(run_id, self.worker_id)
        if run is None:
            return Outcome.DONE
        try:
            return await self._stages(run, progress)
        except LostRun:
            log.info("run canceled or taken over; stopping", extra={"run_id": run_id})
            return Outcome.DONE
        except TransientError as exc:
            log.warning(
                "transient failure, will retry", extra={"run_id": run_id, "error": error_text(exc)}
            )
            await self.store.release(run_id, self.worker_id)
            return Outcome.RETRY

    async def _stages(self, run: RunRecord, progress: Heartbeat | None) -> Outcome:
        attachments: list[AttachmentText] | None = None
        for index, stage in enumerate(run.stages):
            stage_id = str(stage["id"])
            if stage_id in run.completed:
                continue
            if self.stopping.is_set():
                await self.store.release(run.id, self.worker_id)
                return Outcome.RELEASED
            if attachments is None:
                loaded = await self._attachments(run)
                if isinstance(loaded, StageError):
                    await self._fail(run, index, loaded)
                    return Outcome.DONE
                attachments = loaded
            context = template_context(run, attachments)
            kind = str(stage.get("type"))
            if kind not in PURE_STAGES and not await self.store.begin_stage(
                run, self.worker_id, index
            ):
                raise LostRun()
            began = time.monotonic()
            try:
                outcome = await self._with_heartbeat(
                    run.id, progress, self._guarded_stage(stage, run, context, attachments)
                )
            except StageError as exc:
                await self._fail(run, index, exc)
                return Outcome.DONE
            if isinstance(outcome, AwaitInput):
                if not await self.store.await_input(run, self.worker_id, index, outcome.request):
                    raise LostRun()
                return Outcome.DONE
            if not outcome.duration_ms:
                elapsed = int((time.monotonic() - began) * 1000)
                outcome = StageResult(
                    outcome.output,
                    outcome.model,
                    outcome.input_tokens,
                    outcome.output_tokens,
                    outcome.cost_micros,
                    elapsed,
                )
            if kind in PURE_STAGES and index == len(run.stages) - 1:
                finished = await self._finish_with(run, index, outcome, attachments or [])
                if finished is not None:
                    return finished
            if not await self.store.complete_stage(run, self.worker_id, index, outcome):
                raise LostRun()
            run.completed[stage_id] = outcome.output
        try:
            result = self._result(run, attachments or [])
        except StageError as exc:
            await self._fail(run, None, exc)
            return Outcome.DONE
        if not await self.store.finish(run, self.worker_id, result):
            raise LostRun()
        return Outcome.DONE

    async def _pure_plan(self, run: RunRecord) -> PurePlan | None:
        """Every stage's result and the run's, for a run made only of pure stages (no
        attachments to fetch either). None when it is not, or when a stage or the output
        fails: the step-by-step path then records the failure with its events."""
        if (
            run.attachment_ids
            or not run.stages
            or any(str(stage.get("type")) not in PURE_STAGES for stage in run.stages)
        ):
            return None
        results = []
        try:
            for stage in run.stages:
                began = time.monotonic()
                outcome = await self._guarded_stage(stage, run, template_context(run, []), [])
                assert isinstance(outcome, StageResult)  # pure stages never await input
                elapsed = int((time.monotonic() - began) * 1000)
                results.append(replace(outcome, duration_ms=outcome.duration_ms or elapsed))
                run.completed[str(stage["id"])] = outcome.output
            return PurePlan(results, self._result(run, []))
        except StageError:
            return None

    async def _finish_with(
        self,
        run: RunRecord,
        index: int,
        outcome: StageResult,
        attachments: list[AttachmentText],
    ) -> Outcome | None:
        """A trailing pure stage's result and the run's completion in one transaction
        (same rows and events as complete_stage then finish). None: do it the long way
        (an output template that fails reports as the run's own failure)."""
        stage_id = str(run.stages[index]["id"])
        run.completed[stage_id] = outcome.output
        try:
            result = self._result(run, attachments)
        except StageError:
            del run.completed[stage_id]
            return None
        if not await self.store.complete_and_finish(run, self.worker_id, index, outcome, result):
            raise LostRun()
        return Outcome.DONE

    async def _guarded_stage(
        self,
        stage: dict[str, Any],
        run: RunRecord,
        context: dict[str, Any],
        attachments: list[AttachmentText],
    ) -> StageResult | AwaitInput:
        """`_run_stage`, with anything unexpected turned into a stage failure, or into a
        retry when it is an outage (faults.py)."""
        try:
            return await self._run_stage(stage, run, context, attachments)
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
    ) -> StageResult | AwaitInput:
        kind = stage.get("type")
        if kind == "template":
            return await template.run(stage, context)
        if kind == "llm":
            return await llm.run(stage, context, attachments, self.services)
        if kind == "table":
            return await table.run(stage, context["params"], attachments)
        if kind == "http":
            return await http.run(stage, context, self.services)
        if kind == "human_review":
            return human_review.run(stage, run, context)
        raise StageError(INTERNAL, f"unknown stage type {kind!r}")

    async def _with_heartbeat(
        self, run_id: str, progress: Heartbeat | None, work: Awaitable[Any]
    ) -> Any:
        """Await `work` while telling JetStream and the database we are alive.

        If the run is canceled or taken over meanwhile, the work is cancelled."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.heartbeat_seconds)
                if done:
                    return task.result()
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

    async def _fail(self, run: RunRecord, index: int | None, error: StageError) -> None:
        log.info(
            "run failed",
            extra={
                "run_id": run.id,
                "code": error.code,
                "stage_index": index,
                "error": error.message,
            },
        )
        if not await self.store.fail(run, self.worker_id, index, error):
            raise LostRun()


def _no_constants(name: str) -> Any:
    raise ValueError(name)  # NaN/Infinity are not JSON and not storable in jsonb


def parse_maybe_json(text: str) -> Any:
    """The run's result: the rendered output parsed as JSON when it is JSON, else the text."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError:
        return text
