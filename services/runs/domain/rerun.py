"""Rerunning a finished run from one of its stages (POST /workflow-runs/:id/rerun).

The new run is a creation like any other (idempotency, rate limit, billing), of the
original's workflow and version unless the call names another, with the original's input
and params unless given anew. The stages before `from_stage` are not executed again:
their completed rows are copied into the new run (output kept, no cost, so it is billed
only for what it executes); from `from_stage` on, the worker runs them as usual.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from services.runs.domain.create import Caller, CreateRunInput
from services.runs.domain.snapshot import version_label
from services.runs.domain.transitions import StageRow
from weftcore.errors import Conflict, InvalidArgument, NotFound
from weftcore.events import TERMINAL_STATUSES


def rerun_input(
    caller: Caller, original: Mapping[str, Any] | None, inp: CreateRunInput
) -> CreateRunInput:
    """The creation input of a rerun of `original` (a runs row the caller asked for)."""
    assert inp.rerun is not None
    if original is None or not caller.can_see_run(original["user_id"], original["workflow_id"]):
        raise NotFound(f"No such run: {inp.rerun.run_id}.")
    if original["status"] not in TERMINAL_STATUSES:
        raise Conflict(
            f"Run {original['id']} is {original['status']}; only a finished run can be rerun.",
            code="RUN_NOT_FINISHED",
        )
    version = inp.version or str(version_label(original["workflow_version"]))
    return dataclasses.replace(
        inp,
        workflow_id=original["workflow_id"],
        version=version,
        input_text=inp.input_text if inp.rerun.input_given else original["input_text"],
        params=inp.params if inp.rerun.params_given else dict(original["params"] or {}),
        attachment_ids=inp.attachment_ids or list(original["attachment_ids"] or []),
    )


def inherited_stages(
    definition: Mapping[str, Any],
    original_stages: Sequence[Mapping[str, Any]],
    from_stage: str,
) -> tuple[StageRow, ...]:
    """The stage rows a rerun starts with: the original's completed ones before
    `from_stage` ("": none), output kept and cost zero. 400 when `from_stage` is not a
    stage of the definition; 409 when a stage before it did not complete."""
    stages = list(definition.get("stages") or [])
    ids = [str(stage["id"]) for stage in stages]
    if not from_stage:
        return ()
    if from_stage not in ids:
        raise InvalidArgument(
            f"from_stage must be one of the workflow's stages: {', '.join(ids)}.",
            param="from_stage",
        )
    done = {row["stage_id"]: row for row in original_stages if row["status"] == "completed"}
    inherited = []
    for index, stage_id in enumerate(ids[: ids.index(from_stage)]):
        row = done.get(stage_id)
        if row is None:
            raise Conflict(
                f"Stage {stage_id} did not complete in the original run: rerun from it or"
                " from an earlier stage.",
                code="RERUN_STAGE_NOT_COMPLETED",
            )
        inherited.append(
            StageRow(
                stage_index=index,
                stage_id=stage_id,
                stage_type=str(stages[index]["type"]),
                status="completed",
                started_at=row["started_at"],
                output=row["output"],
                model=row["model"],
                completed_at=row["completed_at"],
            )
        )
    return tuple(inherited)
