"""The sandboxed template engine: rendering, strict undefined, sandbox refusals."""

import pytest

from services.runs.worker.templating import TemplateRenderError, render, render_json

CONTEXT = {
    "input_text": "hello",
    "params": {"n": 3},
    "stages": {"summarize": {"total": 42}},
}


def test_renders_context_values() -> None:
    out = render("{{ input_text }} x{{ params.n }} = {{ stages.summarize.total }}", CONTEXT)
    assert out == "hello x3 = 42"


def test_tojson_filter_renders_json() -> None:
    assert render_json('{"s": {{ stages.summarize | tojson }}}', CONTEXT) == {"s": {"total": 42}}


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("{{ missing }}", "'missing' is undefined"),
        ("{{ stages.nope.output }}", "has no attribute 'nope'"),
        ("{% for x in %}", "syntax error on line 1"),
        ("{{ input_text.__class__.__mro__ }}", "unsafe"),
        ("{{ params.update({'n': 4}) }}", "unsafe"),
        ("{{ 'x' * 100000000 }}", "too large"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ],
)
def test_errors_are_clear(source: str, fragment: str) -> None:
    with pytest.raises(TemplateRenderError) as info:
        render(source, CONTEXT)
    assert fragment in info.value.message


def test_render_json_rejects_non_json() -> None:
    with pytest.raises(TemplateRenderError, match="not valid JSON"):
        render_json("{{ input_text }}", CONTEXT)


def test_context_is_not_mutated() -> None:
    params = {"n": 3}
    with pytest.raises(TemplateRenderError):
        render("{{ params.pop('n') }}", {"params": params})
    assert params == {"n": 3}
