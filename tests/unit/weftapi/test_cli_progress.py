"""What `weft run` shows while it follows a run: stage lines, streamed tokens, the review
request with its context (rendered from synthetic events; no server)."""

import io
from typing import Any

from rich.console import Console
from weftapi import Run, RunEvent
from weftapi.cli._follow import Progress


def snapshot(status: str, **extra: Any) -> Run:
    return Run(id="run_1", workflow_id="wf_1", status=status, **extra)


def test_stages_tokens_and_a_review_request_are_shown() -> None:
    out = io.StringIO()
    progress = Progress(Console(file=out, width=120))
    cost = [{"stage": "draft", "duration_ms": 68000, "cost_cents": 2}]
    request = {
        "stage": "review",
        "prompt": "Approve the draft?",
        "context": {"draft": "Dear Ada"},
        "fields": [{"name": "approved", "type": "boolean", "required": True}],
    }
    for event in [
        RunEvent(type="run.started", data=snapshot("running")),
        RunEvent(type="stage.started", stage="draft", data=snapshot("running")),
        RunEvent(type="stage.delta", stage="draft", delta="Dear "),
        RunEvent(type="stage.delta", stage="draft", delta="Ada"),
        RunEvent(type="stage.completed", stage="draft",
                 data=snapshot("running", cost_breakdown=cost)),
        RunEvent(type="run.awaiting_input", stage="review",
                 data=snapshot("awaiting_input", human_input_request=request)),
    ]:  # fmt: skip
        progress.event(event)
    progress.stop()
    text = out.getvalue()
    assert "> stage draft started" in text
    assert "Dear Ada\n" in text  # the tokens, then a line break before the next line
    assert "+ stage draft completed (68000 ms, 2c)" in text
    assert "run run_1: awaiting_input" in text
    assert "Approve the draft?" in text and '"draft": "Dear Ada"' in text
    assert "approved: boolean (required)" in text
    assert "weft runs input run_1 approved=..." in text
