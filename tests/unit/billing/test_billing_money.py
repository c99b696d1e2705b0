"""Money parsing and display: integers only, rounding always up to the cent."""

import pytest

from services.billing.money import (
    MoneyError,
    format_usd_ceil,
    format_usd_exact,
    micros_to_cents_ceil,
    parse_usd,
)


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("0", 0),
        ("1", 1_000_000),
        ("12.50", 12_500_000),
        ("$3.07", 3_070_000),
        ("0.000001", 1),
        ("0.1", 100_000),  # a float would give 100000.00000000001
        ("1e2", 100_000_000),
        ("  2.5  ", 2_500_000),
        ("99999999.999999", 99_999_999_999_999),
    ],
)
def test_parse_usd(text: str, micros: int) -> None:
    assert parse_usd(text) == micros


@pytest.mark.parametrize("text", ["", "abc", "-1", "NaN", "inf", "0.0000001", "1,5", "1.2.3"])
def test_parse_usd_refuses(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_usd(text)


def test_parse_usd_can_refuse_zero() -> None:
    with pytest.raises(MoneyError):
        parse_usd("0.00", allow_zero=False)


@pytest.mark.parametrize(
    ("micros", "cents"), [(0, 0), (1, 1), (9_999, 1), (10_000, 1), (10_001, 2), (1_234_567, 124)]
)
def test_cents_round_up(micros: int, cents: int) -> None:
    assert micros_to_cents_ceil(micros) == cents


@pytest.mark.parametrize(
    ("micros", "text"),
    [(0, "$0.00"), (1, "$0.01"), (120_000, "$0.12"), (120_001, "$0.13"), (123_450_000, "$123.45")],
)
def test_format_usd_ceil(micros: int, text: str) -> None:
    assert format_usd_ceil(micros) == text


@pytest.mark.parametrize(
    ("micros", "text"), [(0, "0"), (12_500_000, "12.5"), (1, "0.000001"), (-2_000_000, "-2")]
)
def test_format_usd_exact(micros: int, text: str) -> None:
    assert format_usd_exact(micros) == text
