"""`llm` stage: render the prompt, call the model, validate JSON answers, price usage."""

import json
import re
import time
from typing import Any

import jsonschema

from services.runs.domain.transitions import StageResult
from services.runs.worker.context import (
    AttachmentText,
    Services,
    attachment_variables,
    truncate_attachments,
)
from services.runs.worker.llm_client import LLMError, OnDelta
from services.runs.worker.model import LLM_ERROR, LLM_INVALID_OUTPUT, StageError
from services.runs.worker.stages.template import render_or_fail

# The embedded model drifts into code without this (ARCHITECTURE.md, LLM providers).
DEFAULT_SYSTEM = (
    "You are a careful assistant inside an automated workflow. Answer in plain text, "
    "not code: no code blocks and no programs unless the user explicitly asks for code."
)
JSON_SYSTEM = (
    "You are a careful assistant inside an automated workflow. Answer with one JSON value "
    "only: no prose before or after it, no code fences."
)
CHARS_PER_TOKEN = 3  # conservative for prompts: better to cut early than overflow
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def _attachment_budget(ctx: Services, model: str, max_tokens: int, prompt_chars: int) -> int:
    """Characters of attachment text that still fit beside the prompt and the answer."""
    try:
        window = ctx.llm.context_tokens(model)
    except LLMError as exc:
        raise StageError(LLM_ERROR, exc.message) from None
    return max(0, (window - max_tokens - 64) * CHARS_PER_TOKEN - prompt_chars)


def _fit_context(
    stage: dict[str, Any],
    context: dict[str, Any],
    attachments: list[AttachmentText],
    ctx: Services,
) -> dict[str, Any]:
    if not attachments:
        return context
    model = str(stage["model"])
    max_tokens = int(stage.get("max_tokens") or 1024)
    # Measure the prompt without attachments, then give attachments what is left.
    bare = {**context, "attachments": [], "attachments_text": ""}
    prompt_chars = len(render_or_fail(str(stage["prompt"]), bare, "prompt"))
    budget = _attachment_budget(ctx, model, max_tokens, prompt_chars)
    fitted = truncate_attachments(attachments, budget)
    return {**context, **attachment_variables(fitted)}


def parse_json_answer(text: str, schema: dict[str, Any] | None) -> Any:
    """The answer as JSON, validated against the stage's schema; StageError if not."""
    match = _FENCE.match(text)
    raw = match.group(1) if match else text.strip()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StageError(
            LLM_INVALID_OUTPUT,
            f"the model's answer is not valid JSON ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno}): {raw[:200]!r}",
        ) from None
    if schema:
        validator = jsonschema.Draft202012Validator(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            raise StageError(
                LLM_INVALID_OUTPUT,
                f"the model's JSON answer does not match the stage's schema at {where}: "
                f"{error.message}",
            )
    return value


async def run(
    stage: dict[str, Any],
    context: dict[str, Any],
    attachments: list[AttachmentText],
    ctx: Services,
    on_delta: OnDelta | None = None,
) -> StageResult:
    """Call the model once (the client retries transient failures) and price the usage;
    with `on_delta`, the answer streams to it as it is generated."""
    model = str(stage["model"])
    wants_json = stage.get("response_format") == "json"
    schema = stage.get("json_schema")
    context = _fit_context(stage, context, attachments, ctx)
    prompt = render_or_fail(str(stage["prompt"]), context, "prompt")
    if stage.get("system"):
        system = render_or_fail(str(stage["system"]), context, "system")
    else:
        system = JSON_SYSTEM if wants_json else DEFAULT_SYSTEM
        if wants_json and schema:
            system += " The JSON must match this JSON schema: " + json.dumps(schema)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    began = time.monotonic()
    try:
        answer = await ctx.llm.chat(
            model,
            messages,
            max_tokens=int(stage.get("max_tokens") or 1024),
            temperature=float(stage.get("temperature") or 0.0),
            json_mode=wants_json,
            on_delta=on_delta,
        )
    except LLMError as exc:
        raise StageError(LLM_ERROR, exc.message) from None
    duration_ms = int((time.monotonic() - began) * 1000)
    try:
        cost = await ctx.pricer.price(
            str(stage["id"]), model, answer.input_tokens, answer.output_tokens
        )
    except StageError as exc:  # keep the tokens on record even when they cannot be priced
        spent = StageResult(None, model, answer.input_tokens, answer.output_tokens, 0, 0)
        raise StageError(exc.code, exc.message, usage=spent) from None
    usage = StageResult(
        output=answer.text,
        model=model,
        input_tokens=answer.input_tokens,
        output_tokens=answer.output_tokens,
        cost_micros=cost,
        duration_ms=duration_ms,
    )
    if not wants_json:
        return usage
    try:
        value = parse_json_answer(answer.text, schema)
    except StageError as exc:
        raise StageError(exc.code, exc.message, usage=usage) from None
    return StageResult(
        output=value,
        model=model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_micros=cost,
        duration_ms=duration_ms,
    )
