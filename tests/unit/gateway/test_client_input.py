"""Values a client sends, checked at the edge: storable text, bounded depth and integers."""

import json

import pytest

from gateway.client_input import (
    MAX_JSON_DEPTH,
    check_url_values,
    parse_json,
    text_problem,
)
from weftcore.errors import InvalidArgument


def _refused(raw: str) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        parse_json(raw)
    return info.value


def test_plain_documents_pass_unchanged() -> None:
    doc = {"input_text": "héllo 👋", "params": {"n": -(2**63), "m": 2**63 - 1, "f": 1.5}}
    assert parse_json(json.dumps(doc)) == doc


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ('{"a": "x\\u0000"}', "a"),
        ('{"a": ["ok", {"b": "\\ud800"}]}', "a[1].b"),
        ('{"a": 9223372036854775808}', "a"),
        ('{"a": -9223372036854775809}', "a"),
        ('{"a": [' + "1" * 5000 + "]}", "a[0]"),
        ('{"a\\u0000": 1}', None),
        ('{"x": {"a\\u0000": 1}}', "x"),
    ],
)
def test_unstorable_values_name_their_path(raw: str, param: str | None) -> None:
    err = _refused(raw)
    assert err.param == param
    assert "\x00" not in err.message


def test_long_but_in_range_literals_are_converted() -> None:
    assert parse_json('{"a": -9223372036854775808}') == {"a": -(2**63)}


def test_depth_is_bounded_without_recursion() -> None:
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(ok) is not None
    too_deep = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    assert _refused(too_deep).code == "INVALID_JSON"
    # Deeper than the parser's own recursion limit: still a 400, not a crash.
    assert _refused("[" * 100_000 + "]" * 100_000).code == "INVALID_JSON"


def test_non_finite_numbers_and_bad_json_are_invalid_json() -> None:
    for raw in ('{"a": NaN}', '{"a": Infinity}', "{", b"\xff\xfe"):
        assert _refused(raw).code == "INVALID_JSON"  # type: ignore[arg-type]


def test_text_problem() -> None:
    assert text_problem("fine") is None
    assert text_problem("a\x00") == "contains a NUL character"
    assert text_problem("\udcff") is not None


def test_url_values() -> None:
    check_url_values({"run_id": "run_abc", "limit": "20"}, "Path parameter")
    for bad in ("run_\x00", "a\nb", "\ud800", "x" * 1025):
        with pytest.raises(InvalidArgument) as info:
            check_url_values({"run_id": bad}, "Path parameter")
        assert info.value.param == "run_id"
