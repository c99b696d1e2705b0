"""`template` stage: render sandboxed Jinja2 to text or JSON; no LLM, no cost."""

from typing import Any

from services.runs.domain.transitions import StageResult
from services.runs.worker.model import TEMPLATE_ERROR, StageError
from services.runs.worker.templating import TemplateRenderError, render, render_json


def render_or_fail(source: str, context: dict[str, Any], what: str = "template") -> str:
    """Render for a stage; a template mistake becomes the stage's TEMPLATE_ERROR."""
    try:
        return render(source, context)
    except TemplateRenderError as exc:
        raise StageError(TEMPLATE_ERROR, f"{what}: {exc.message}") from None


async def run(stage: dict[str, Any], context: dict[str, Any]) -> StageResult:
    source = str(stage.get("template") or "")
    try:
        if stage.get("output") == "json":
            return StageResult(output=render_json(source, context))
        return StageResult(output=render(source, context))
    except TemplateRenderError as exc:
        raise StageError(TEMPLATE_ERROR, f"template: {exc.message}") from None
