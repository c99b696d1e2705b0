"""`human_review` stage: pause with a typed form; the submitted values are its output."""

import json
from typing import Any

from services.runs.domain.transitions import StageResult
from services.runs.worker.model import AwaitInput, RunRecord
from services.runs.worker.stages.template import render_or_fail


def run(stage: dict[str, Any], run: RunRecord, context: dict[str, Any]) -> StageResult | AwaitInput:
    """The answer if SubmitInput stored one for this stage, else the request to show."""
    stage_id = str(stage["id"])
    if stage_id in run.human_inputs:
        return StageResult(output=run.human_inputs[stage_id])
    prompt = render_or_fail(str(stage.get("prompt") or ""), context, "prompt")
    source = stage.get("context")
    review_context: Any
    if source:
        text = render_or_fail(str(source), context, "context")
        try:
            review_context = json.loads(text)
        except json.JSONDecodeError:
            review_context = None
        # The request's `context` is an object (API.md); plain text goes under "text".
        if not isinstance(review_context, dict):
            review_context = {"text": text}
    else:
        # By default the reviewer sees what the run produced so far.
        review_context = {"stages": dict(run.completed)}
    return AwaitInput(
        request={
            "stage": stage_id,
            "prompt": prompt,
            "fields": list(stage.get("fields") or []),
            "context": review_context,
        }
    )
