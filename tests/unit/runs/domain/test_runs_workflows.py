"""Workflow definitions: the shipped examples, validation errors with the bad field's path."""

import copy
from pathlib import Path
from typing import Any

import pytest

from services.runs.domain.workflows import (
    load_definition,
    public_fields,
    public_stages,
    stable_id,
    validate_definition,
)
from weftcore.errors import InvalidArgument

EXAMPLES = sorted((Path(__file__).parents[4] / "workflows").glob("*.yaml"))

BASE: dict[str, Any] = {
    "slug": "demo",
    "name": "Demo",
    "fields": [{"name": "n", "type": "integer", "constraints": {"min": 1}}],
    "stages": [
        {"id": "ask", "type": "llm", "model": "local:qwen", "prompt": "Hi {{ input_text }}"},
        {"id": "fmt", "type": "template", "template": "{{ stages.ask }}"},
    ],
}


def bad(mutate: Any) -> InvalidArgument:
    doc = copy.deepcopy(BASE)
    mutate(doc)
    with pytest.raises(InvalidArgument) as info:
        validate_definition(doc)
    return info.value


def test_the_three_examples_are_valid_and_cover_the_required_shapes() -> None:
    assert [p.name for p in EXAMPLES] == [
        "classify-ticket.yaml",
        "review-reply.yaml",
        "timesheet-summary.yaml",
    ]
    defs = {p.stem: load_definition(p.read_text()) for p in EXAMPLES}
    types = {k: [s["type"] for s in d["stages"]] for k, d in defs.items()}
    assert types == {
        "classify-ticket": ["llm", "template"],
        "review-reply": ["llm", "human_review", "template"],
        "timesheet-summary": ["table", "llm"],
    }
    classify = defs["classify-ticket"]["stages"][0]
    assert classify["response_format"] == "json" and classify["json_schema"]["type"] == "object"
    totals, summary = defs["timesheet-summary"]["stages"]
    assert "GROUPING SETS" in totals["query"]
    assert summary["model"] == "local:qwen2.5-coder-1.5b-instruct"
    assert "code" in summary["system"] and "plain" in summary["system"]


def test_id_is_derived_from_the_slug_and_stable() -> None:
    d = validate_definition(copy.deepcopy(BASE))
    assert d["id"] == stable_id("demo") == stable_id("demo")
    assert d["id"].startswith("wf_") and d["id"] != stable_id("demo2")
    explicit = validate_definition({**copy.deepcopy(BASE), "id": "wf_mine"})
    assert explicit["id"] == "wf_mine"


@pytest.mark.parametrize(
    ("mutate", "param"),
    [
        (lambda d: d.pop("slug"), "slug"),
        (lambda d: d.update(slug="Not A Slug"), "slug"),
        (lambda d: d.update(stages=[]), "stages"),
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d["stages"][0].pop("model"), "stages[0].model"),
        (lambda d: d["stages"][0].update(model="gpt4"), "stages[0].model"),
        (lambda d: d["stages"][0].update(max_tokens=0), "stages[0].max_tokens"),
        (lambda d: d["stages"][0].update(temperature="hot"), "stages[0].temperature"),
        (lambda d: d["stages"][1].update(type="shell"), "stages[1].type"),
        (lambda d: d["stages"][1].update(template="{% if %}"), "stages[1].template"),
        (lambda d: d["stages"][1].update(prompt="x"), "stages[1].prompt"),
        (lambda d: d["stages"][1].update(id="ask"), "stages[1].id"),
        (lambda d: d["fields"][0].update(type="date"), "fields[0].type"),
        (lambda d: d["fields"].append({"name": "n", "type": "text"}), "fields[1].name"),
        (lambda d: d["fields"].append({"name": "s", "type": "select"}), "fields[1].constraints"),
        (lambda d: d["fields"][0].update(default=0), "fields[0].default"),
        (
            lambda d: d["fields"].append(
                {"name": "p", "type": "text", "constraints": {"pattern": "("}}
            ),
            "fields[1].constraints.pattern",
        ),
        (
            lambda d: d["stages"].append(
                {"id": "h", "type": "http", "url": "x", "method": "GET", "timeout_seconds": 0}
            ),
            "stages[2].timeout_seconds",
        ),
        (
            lambda d: d["stages"].append({"id": "r", "type": "human_review", "prompt": "ok?"}),
            "stages[2].fields",
        ),
        (
            lambda d: d["stages"][0].update(response_format="json", json_schema={"type": 5}),
            "stages[0].json_schema",
        ),
        (lambda d: d.update(output="{{ unclosed"), "output"),
    ],
)
def test_errors_name_the_path_of_the_bad_field(mutate: Any, param: str) -> None:
    err = bad(mutate)
    assert err.param == param, err.message
    assert err.code == "INVALID_PARAM"
    assert param in err.message


def test_unparseable_text_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgument) as info:
        load_definition("slug: [unclosed")
    assert info.value.param == "definition"
    with pytest.raises(InvalidArgument):
        load_definition("- just\n- a list\n")


def test_public_views_list_fields_and_stage_models() -> None:
    d = validate_definition(copy.deepcopy(BASE))
    assert public_stages(d) == [
        {"id": "ask", "type": "llm", "model": "local:qwen"},
        {"id": "fmt", "type": "template"},
    ]
    assert public_fields(d) == [
        {
            "name": "n",
            "type": "integer",
            "required": False,
            "description": "",
            "default": None,
            "constraints": {"min": 1},
        }
    ]


def test_an_output_schema_must_be_a_json_schema() -> None:
    doc = {"slug": "s", "name": "n", "stages": [{"id": "t", "type": "template", "template": "x"}]}
    assert validate_definition({**doc, "output_schema": {"type": "object"}})["output_schema"]
    with pytest.raises(InvalidArgument) as info:
        validate_definition({**doc, "output_schema": {"type": "nonsense"}})
    assert info.value.param == "output_schema"
