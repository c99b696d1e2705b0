"""The runs API use cases: workflows, reading and waiting on runs, cancel, human input.

CreateRun lives in create.py. Everything here raises WeftErrors with public codes.
"""

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.runs.domain.authoring import Workflows
from services.runs.domain.create import Caller, CreateRunInput, CreateRunOutput, RunCreator
from services.runs.domain.open_waits import OpenWaits
from services.runs.domain.params import validate_values
from services.runs.domain.rerun import inherited_stages, rerun_input
from services.runs.domain.snapshot import run_snapshot
from services.runs.domain.transitions import (
    Canceled,
    InputSubmitted,
    RunState,
    Transition,
    advance,
)
from services.runs.store import repository as repo
from services.runs.store import workflows as workflow_store
from services.runs.store.notify import Notifier
from services.runs.store.writer import RunWriter
from weftcore.errors import Conflict, InvalidArgument, NotFound, Unavailable
from weftcore.events import TERMINAL_STATUSES
from weftcore.ids import utcnow

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 60
# A cancel or an answer that meets a run changing under it reads it again this often.
_CHANGE_ATTEMPTS = 5
STATUSES = frozenset({"pending", "running", "awaiting_input", "completed", "failed", "canceled"})


@dataclass(frozen=True)
class RunView:
    """A run row with its stage rows: enough for the snapshot and the proto."""

    row: asyncpg.Record
    stages: Sequence[Mapping[str, Any]]

    def snapshot(self) -> dict[str, Any]:
        return run_snapshot(self.row, self.stages, self.row["queue_position"])


def _not_found_run(run_id: str) -> NotFound:
    return NotFound(f"No such run: {run_id}.")


def check_limit(limit: int) -> int:
    if limit == 0:
        return 20
    if not 1 <= limit <= 100:
        raise InvalidArgument("limit must be between 1 and 100.", param="limit")
    return limit


class RunsService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        notifier: Notifier,
        creator: RunCreator,
        open_waits: OpenWaits,
        writer: RunWriter,
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._writer = writer
        # Wakes the outbox relay of this process at once (NOTIFY would, a hop later).
        self._after_commit = after_commit
        self._notifier = notifier
        self._creator = creator
        self.open_waits = open_waits
        self.workflows = Workflows(pool)

    # ---- runs ------------------------------------------------------------------------

    async def create_run(self, caller: Caller, inp: CreateRunInput) -> CreateRunOutput:
        if inp.rerun is None:
            target = await self.workflows.run_target(caller, inp.workflow_id, inp.version)
            return await self._creator.create(caller, target, inp)
        rerun = inp.rerun
        run_id = rerun.run_id
        original = await repo.get_run(self._pool, run_id) if run_id.startswith("run_") else None
        inp = rerun_input(caller, original, inp)
        target = await self.workflows.run_target(caller, inp.workflow_id, inp.version)
        inherited = inherited_stages(
            target.definition, await repo.stage_rows(self._pool, run_id), rerun.from_stage
        )
        return await self._creator.create(caller, target, inp, inherited)

    async def _owned(self, caller: Caller, run_id: str) -> asyncpg.Record:
        row = await repo.get_run(self._pool, run_id) if run_id.startswith("run_") else None
        if row is None or not caller.can_see_run(row["user_id"], row["workflow_id"]):
            raise _not_found_run(run_id)
        return row

    async def get_run(
        self, caller: Caller, run_id: str, wait_seconds: int = 0, known_status: str = ""
    ) -> RunView:
        """The run; with `wait_seconds`, held until its status differs from `known_status`
        (default: its status now) or the time is up."""
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise InvalidArgument(f"wait must be between 0 and {MAX_WAIT_SECONDS}.", param="wait")
        if wait_seconds == 0:
            found = await repo.get_run_with_stages(self._pool, run_id)
            if found is None or not caller.can_see_run(
                found[0]["user_id"], found[0]["workflow_id"]
            ):
                raise _not_found_run(run_id)
            return RunView(found[0], found[1])
        # Watch before reading, so a change between the read and the wait is not missed.
        # Only the notifier wakes the wait (it wakes every waiter after reconnecting, so
        # no change is missed); the status is re-read only when it may have changed.
        event = self._notifier.watch(run_id)
        try:
            row = await self._owned(caller, run_id)
            known = known_status or row["status"]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait_seconds
            with self.open_waits.hold(caller.account_id):
                while row["status"] == known and row["status"] not in TERMINAL_STATUSES:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        await asyncio.wait_for(event.wait(), remaining)
                    except TimeoutError:
                        break
                    event.clear()
                    fresh = await repo.get_run(self._pool, run_id)
                    if fresh is None:
                        raise _not_found_run(run_id)
                    row = fresh
        finally:
            self._notifier.unwatch(run_id, event)
        return RunView(row, await repo.stage_rows(self._pool, run_id))

    async def list_runs(
        self, caller: Caller, workflow_id: str, status: str, limit: int, starting_after: str
    ) -> tuple[list[RunView], bool]:
        limit = check_limit(limit)
        if status and status not in STATUSES:
            shown = ", ".join(sorted(STATUSES))
            raise InvalidArgument(f"status must be one of: {shown}.", param="status")
        if workflow_id and not caller.may_use(workflow_id):
            return [], False  # as for a workflow that does not exist
        allowlist = None if caller.allowlist is None else list(caller.allowlist)
        rows = await repo.list_runs(
            self._pool, caller.user_id, allowlist, workflow_id, status, limit + 1, starting_after
        )
        more = len(rows) > limit
        rows = rows[:limit]
        stages = await repo.stage_rows_for(self._pool, [r["id"] for r in rows])
        return [RunView(r, stages.get(r["id"], [])) for r in rows], more

    async def cancel_run(self, caller: Caller, run_id: str) -> RunView:
        """pending/running/awaiting_input -> canceled; terminal runs: 409."""
        await self._owned(caller, run_id)

        def cancel(state: RunState) -> list[Transition]:
            if state.status in TERMINAL_STATUSES:
                raise Conflict(
                    f"Run {run_id} is already {state.status} and cannot be canceled.",
                    code="RUN_NOT_CANCELABLE",
                )
            return [Canceled()]

        return await self._change(run_id, cancel)

    async def submit_input(self, caller: Caller, run_id: str, values: Any) -> RunView:
        """Answer the waiting human-review stage: validate, store, resume (new job)."""
        row = await self._owned(caller, run_id)
        version = await workflow_store.get_version(
            self._pool, row["workflow_id"], row["workflow_version"]
        )
        stages = (version["definition"] if version else {}).get("stages", [])

        def answer(state: RunState) -> list[Transition]:
            request = state.human_input_request
            if state.status != "awaiting_input" or not request:
                raise Conflict(
                    f"Run {run_id} is {state.status}, not awaiting input.",
                    code="RUN_NOT_AWAITING_INPUT",
                )
            stage_id = request["stage"]
            stage = next((s for s in stages if s["id"] == stage_id), None)
            fields = stage["fields"] if stage else request.get("fields", [])
            return [InputSubmitted(stage_id, validate_values(fields, values, "values"))]

        return await self._change(run_id, answer)

    async def _change(
        self, run_id: str, decide: Callable[[RunState], Sequence[Transition]]
    ) -> RunView:
        """Read the run, `decide` its transitions, write them; read again and decide
        anew when a worker changed the run in between."""
        for _ in range(_CHANGE_ATTEMPTS):
            view = await self._view(run_id)
            state = RunState.from_rows(view.row, view.stages)
            change = advance(state, decide(state), utcnow())
            if (await self._writer.write(change)).applied:
                self._after_commit()
                return await self._view(run_id)
        raise Unavailable(f"Run {run_id} is changing fast; retry the request.")

    async def _view(self, run_id: str) -> RunView:
        row = await repo.get_run(self._pool, run_id)
        if row is None:
            raise _not_found_run(run_id)
        return RunView(row, await repo.stage_rows(self._pool, run_id))
