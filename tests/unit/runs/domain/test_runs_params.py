"""Run params and human-review values against declared fields, every field type."""

from typing import Any

import pytest

from services.runs.domain.create import check_input_text
from services.runs.domain.params import file_values, validate_values
from weftcore.errors import InvalidArgument

FIELDS: list[dict[str, Any]] = [
    {"name": "title", "type": "text", "constraints": {"min_length": 2, "max_length": 5}},
    {"name": "code", "type": "text", "constraints": {"pattern": "[A-Z]{3}"}},
    {"name": "ratio", "type": "number", "constraints": {"min": 0, "max": 1}},
    {"name": "max_projects", "type": "integer", "constraints": {"min": 1, "max": 50}},
    {"name": "dry_run", "type": "boolean", "default": False},
    {"name": "extra", "type": "json"},
    {"name": "tone", "type": "select", "constraints": {"options": ["a", "b", 3]}},
    {"name": "sheet", "type": "file"},
    {"name": "who", "type": "text", "required": True},
]


def ok(values: dict[str, Any]) -> dict[str, Any]:
    return validate_values(FIELDS, {"who": "me", **values}, "params")


def err(values: dict[str, Any]) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        validate_values(FIELDS, {"who": "me", **values}, "params")
    return info.value


def test_valid_values_of_every_type_pass_and_defaults_apply() -> None:
    got = ok(
        {
            "title": "abc",
            "code": "ABC",
            "ratio": 0.5,
            "max_projects": 7,
            "extra": {"nested": [1, None]},
            "tone": 3,
            "sheet": "att_123",
        }
    )
    assert got == {
        "title": "abc",
        "code": "ABC",
        "ratio": 0.5,
        "max_projects": 7,
        "dry_run": False,
        "extra": {"nested": [1, None]},
        "tone": 3,
        "sheet": "att_123",
        "who": "me",
    }
    assert file_values(FIELDS, got) == ["att_123"]


def test_omitted_optional_fields_are_present_as_null() -> None:
    # Templates read `params.extra` / `stages.review.edited_reply` without an undefined error.
    got = ok({})
    assert got == {name: None for name in (f["name"] for f in FIELDS)} | {
        "dry_run": False,
        "who": "me",
    }
    assert file_values(FIELDS, got) == []


def test_integral_floats_become_integers_and_ints_are_numbers() -> None:
    got = ok({"max_projects": 3.0, "ratio": 1})
    assert got["max_projects"] == 3 and isinstance(got["max_projects"], int)
    assert got["ratio"] == 1


@pytest.mark.parametrize(
    ("values", "param"),
    [
        ({"title": 5}, "params.title"),
        ({"title": "a"}, "params.title"),
        ({"title": "abcdef"}, "params.title"),
        ({"code": "ABCD"}, "params.code"),
        ({"code": "abc"}, "params.code"),
        ({"ratio": "0.5"}, "params.ratio"),
        ({"ratio": True}, "params.ratio"),
        ({"ratio": 1.5}, "params.ratio"),
        ({"ratio": -0.1}, "params.ratio"),
        ({"max_projects": 2.5}, "params.max_projects"),
        ({"max_projects": "7"}, "params.max_projects"),
        ({"max_projects": False}, "params.max_projects"),
        ({"max_projects": 0}, "params.max_projects"),
        ({"max_projects": 51}, "params.max_projects"),
        ({"dry_run": "true"}, "params.dry_run"),
        ({"dry_run": 1}, "params.dry_run"),
        ({"tone": "c"}, "params.tone"),
        ({"tone": "3"}, "params.tone"),
        ({"sheet": "file.csv"}, "params.sheet"),
        ({"sheet": 12}, "params.sheet"),
        ({"unknown": 1}, "params.unknown"),
    ],
)
def test_bad_values_are_400_naming_the_param(values: dict[str, Any], param: str) -> None:
    e = err(values)
    assert (e.code, e.param) == ("INVALID_PARAM", param)


def test_missing_required_is_missing_param_and_null_counts_as_missing() -> None:
    for values in ({}, {"who": None}):
        with pytest.raises(InvalidArgument) as info:
            validate_values(FIELDS, values, "params")
        assert (info.value.code, info.value.param) == ("MISSING_PARAM", "params.who")


def test_params_must_be_an_object_and_the_prefix_is_used() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_values(FIELDS, [1], "values")
    assert info.value.param == "values"
    with pytest.raises(InvalidArgument) as info:
        validate_values([{"name": "ok", "type": "boolean", "required": True}], {}, "values")
    assert info.value.param == "values.ok"


def test_input_text_cap() -> None:
    check_input_text("x" * 50_000)
    with pytest.raises(InvalidArgument) as info:
        check_input_text("x" * 50_001)
    assert info.value.param == "input_text"


def test_file_fields_take_their_kinds_within_their_size() -> None:
    from types import SimpleNamespace

    from services.runs.domain.params import check_files
    from weftcore.errors import ResourceExhausted

    fields: list[dict[str, Any]] = [
        {
            "name": "sheet",
            "type": "file",
            "constraints": {"kinds": ["csv", "xlsx"], "max_bytes": 100},
        },
        {"name": "any", "type": "file"},
    ]
    csv = SimpleNamespace(kind="csv", byte_size=100)
    pdf = SimpleNamespace(kind="pdf", byte_size=10)
    big = SimpleNamespace(kind="csv", byte_size=101)
    check_files(fields, {"sheet": "att_1", "any": "att_2"}, {"att_1": csv, "att_2": pdf})
    with pytest.raises(InvalidArgument) as wrong:
        check_files(fields, {"sheet": "att_2"}, {"att_2": pdf})
    assert wrong.value.param == "params.sheet"
    assert wrong.value.message == "params.sheet must be a csv or xlsx file; att_2 is pdf."
    with pytest.raises(ResourceExhausted) as large:
        check_files(fields, {"sheet": "att_3"}, {"att_3": big})
    assert (large.value.code, large.value.param) == ("PAYLOAD_TOO_LARGE", "params.sheet")
