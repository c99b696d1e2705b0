"""Sandboxed Jinja2 rendering for prompts, template stages, http bodies and run output.

Workflow authors are not trusted with the worker's process: templates render in
`ImmutableSandboxedEnvironment` (no attribute tricks, no mutation of the context) with
`StrictUndefined`, so a typo such as `{{ stages.sumary.output }}` fails the stage with a
clear message instead of silently rendering an empty string.
"""

import json
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

# Bounds what one template may produce, so `{{ 'x' * 10**9 }}` cannot exhaust memory.
MAX_OUTPUT_CHARS = 1_000_000


class TemplateRenderError(Exception):
    """A template failed to compile or render; `message` is safe to show to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        # Repetition is the cheap way to build a huge string; cap it before it happens.
        if operator == "*" and isinstance(left, str | list) and isinstance(right, int):
            if len(left) * right > MAX_OUTPUT_CHARS:
                raise SecurityError("the result of this repetition would be too large")
        return super().call_binop(context, operator, left, right)


def _environment() -> ImmutableSandboxedEnvironment:
    env = _Environment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        extensions=[],
    )
    env.filters["tojson"] = _tojson
    env.filters["json"] = _tojson
    return env


_ENV = _environment()


@lru_cache(maxsize=512)
def _compile(source: str) -> Any:
    return _ENV.from_string(source)


def render(source: str, context: dict[str, Any]) -> str:
    """Render `source` with `context`; raise TemplateRenderError with a readable reason."""
    try:
        template = _compile(source)
    except TemplateSyntaxError as exc:
        raise TemplateRenderError(
            f"template syntax error on line {exc.lineno}: {exc.message}"
        ) from None
    try:
        text = template.render(context)
    except UndefinedError as exc:
        raise TemplateRenderError(f"undefined value in template: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateRenderError(f"template refused by the sandbox: {exc}") from None
    except TemplateError as exc:
        raise TemplateRenderError(f"template error: {exc.message or exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise TemplateRenderError(f"template error: {type(exc).__name__}: {exc}") from None
    if len(text) > MAX_OUTPUT_CHARS:
        raise TemplateRenderError(
            f"template output is too large ({len(text)} characters, max {MAX_OUTPUT_CHARS})"
        )
    return str(text)


def render_json(source: str, context: dict[str, Any]) -> Any:
    """Render `source` and parse the result as JSON (for template stages with format json)."""
    text = render(source, context)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateRenderError(
            f"template output is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
