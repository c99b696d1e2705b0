"""The console's pure pieces: CSRF tokens, redirects, the key form, field values,
formatting and usage figures."""

from typing import Any

import pytest

from console.diffs import definition_diff
from console.field_values import form_values
from console.formats import cents, duration_ms, usd_micros, when
from console.key_form import key_request, parse_pins
from console.security import CSP, SECURITY_HEADERS, safe_next, same, session_csrf
from console.usage_math import bars, cost_per_day, cost_per_workflow, open_reservations
from weft.billing.v1 import billing_pb2
from weftcore.errors import InvalidArgument


def test_csrf_token_is_tied_to_the_session() -> None:
    a, b = session_csrf("wses_a"), session_csrf("wses_b")
    assert a != b and len(a) == 43 and "wses_a" not in a
    assert same(a, session_csrf("wses_a"))
    assert not same(a, b) and not same(a, "") and not same("", "")


def test_the_headers_forbid_inline_script_and_framing() -> None:
    assert "script-src 'self'" in CSP and "'unsafe-inline'" not in CSP
    assert "frame-ancestors 'none'" in CSP
    assert SECURITY_HEADERS["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/app/workflows/wf_1/runs/run_1", "/app/workflows/wf_1/runs/run_1"),
        ("/app/runs?status=failed", "/app/runs?status=failed"),
        ("https://evil.example/app/", "/app/runs"),
        ("//evil.example/app/", "/app/runs"),
        ("/app/\\evil", "/app/runs"),
        ("/api/v1/me", "/app/runs"),
        (None, "/app/runs"),
        ("/app/x\ny", "/app/runs"),
    ],
)
def test_only_console_paths_are_followed_after_sign_in(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_key_form_becomes_a_create_key_request() -> None:
    form = {
        "name": "ci",
        "workflow_allowlist": "wf_a, wf_b",
        "version_pins": "wf_a=2\nwf_b=5",
        "expires_in_days": "2",
    }
    request = key_request("usr_1", form, ["workflow_runs:create", "bogus"], now=1000.0)
    assert request.user_id == "usr_1" and request.name == "ci"
    assert list(request.scopes) == ["workflow_runs:create"]
    assert request.has_allowlist and list(request.workflow_allowlist) == ["wf_a", "wf_b"]
    assert dict(request.version_pins) == {"wf_a": 2, "wf_b": 5}
    assert request.expires_at_unix == 1000 + 2 * 86400
    empty = key_request("usr_1", {"name": "x"}, [])
    assert not empty.has_allowlist and empty.expires_at_unix == 0


@pytest.mark.parametrize("days", ["0", "-1", "abc", "4000"])
def test_bad_expiry_is_refused(days: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        key_request("usr_1", {"name": "x", "expires_in_days": days}, [])
    assert caught.value.param == "expires_in_days"


@pytest.mark.parametrize("raw", ["wf_a", "wf_a=0", "=3", "wf_a=x"])
def test_bad_pins_are_refused(raw: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_pins(raw)


FIELDS: list[dict[str, Any]] = [
    {"name": "approved", "type": "boolean", "required": True},
    {"name": "edited", "type": "text"},
    {"name": "count", "type": "integer"},
    {"name": "ratio", "type": "number"},
    {"name": "meta", "type": "json"},
]


def test_form_values_are_typed_and_empty_optionals_left_out() -> None:
    got = form_values(FIELDS, {"approved": "on", "edited": "", "count": "3", "meta": '{"a": 1}'})
    assert got == {"approved": True, "count": 3, "meta": {"a": 1}}
    assert form_values(FIELDS, {})["approved"] is False


def test_form_values_name_the_bad_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        form_values(FIELDS, {"ratio": "lots"})
    assert caught.value.param == "ratio"


def test_formats() -> None:
    assert (cents(0), cents(12), cents(123456), cents(None)) == ("$0.00", "$0.12", "$1,234.56", "-")
    assert usd_micros(1_234_500) == "$1.2345" and usd_micros(-20_000) == "-$0.0200"
    assert when("2026-12-07T22:40:11.123Z") == "2026-12-07 22:40:11 UTC" and when(None) == "-"
    assert (duration_ms(950), duration_ms(1500)) == ("950 ms", "1.5 s")


def _entry(kind: str, run: str, micros: int, at: str) -> billing_pb2.LedgerEntry:
    return billing_pb2.LedgerEntry(kind=kind, run_id=run, amount_micros=micros, created_at=at)


def test_usage_figures() -> None:
    entries = [
        _entry("grant", "", 100_000_000, "2026-12-01T00:00:00Z"),
        _entry("reserve", "run_a", -50_000, "2026-12-01T10:00:00Z"),
        _entry("capture", "run_a", -30_000, "2026-12-01T10:00:01Z"),
        _entry("release", "run_a", 20_000, "2026-12-01T10:00:01Z"),
        _entry("reserve", "run_b", -40_000, "2026-12-02T09:00:00Z"),
        _entry("capture", "run_c", -10_000, "2026-12-02T09:00:00Z"),
    ]
    assert [e.run_id for e in open_reservations(entries)] == ["run_b"]
    assert cost_per_day(entries) == [("2026-12-01", 30_000), ("2026-12-02", 10_000)]
    runs = [
        {"workflow_id": "wf_a", "cost_cents": 2},
        {"workflow_id": "wf_b", "cost_cents": 5},
        {"workflow_id": "wf_a", "cost_cents": 1},
    ]
    assert cost_per_workflow(runs) == [("wf_b", 5), ("wf_a", 3)]
    drawn = bars([("a", 10), ("b", 5), ("c", 0)], width=300, height=100)
    assert [b.height for b in drawn] == [100, 50, 0]
    assert [b.y for b in drawn] == [0, 50, 100]
    assert all(b.x + b.width <= 300 for b in drawn) and bars([]) == []


def test_definition_diff() -> None:
    before = {"slug": "a", "stages": [{"id": "s", "type": "template", "template": "x"}]}
    after = {"slug": "a", "stages": [{"id": "s", "type": "template", "template": "y"}]}
    diff = definition_diff(before, after, "v1", "v2")
    assert diff.startswith("--- v1\n+++ v2\n")
    assert "-  template: x\n" in diff and "+  template: y\n" in diff
    assert definition_diff(after, after, "v2", "draft") == ""
