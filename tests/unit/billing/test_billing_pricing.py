"""Stage pricing: exact integer maths, each stage rounded up to a whole cent."""

import pytest

from services.billing.config import parse_prices
from services.billing.pricing import (
    Price,
    UnknownModel,
    Usage,
    price_stages,
    stage_cost_micros,
    total_cost_micros,
)
from weftcore.config import ConfigError

PRICE = Price("fake:echo", input_micros_per_mtok=2_000_000, output_micros_per_mtok=6_000_000)


@pytest.mark.parametrize(
    ("inp", "out", "micros"),
    [
        (0, 0, 0),
        (1, 0, 10_000),  # 2 micros -> one cent: a used stage is never free
        (5_000, 0, 10_000),  # exactly one cent
        (5_001, 0, 20_000),  # a hair over one cent
        (1_000_000, 1_000_000, 8_000_000),
        (812, 143, 10_000),  # 1,624 + 858 = 2,482 micros
    ],
)
def test_stage_cost(inp: int, out: int, micros: int) -> None:
    assert stage_cost_micros(PRICE, inp, out) == micros


def test_stage_cost_is_exact_for_huge_counts() -> None:
    # Python ints: no float drift at 10^12 tokens.
    price = Price("m:x", 3, 0)
    assert stage_cost_micros(price, 10**12, 0) == 3_000_000
    assert stage_cost_micros(price, 10**12 + 1, 0) == 3_010_000


def test_free_model_costs_nothing() -> None:
    assert stage_cost_micros(Price("local:x", 0, 0), 10**9, 10**9) == 0


def test_negative_tokens_refused() -> None:
    with pytest.raises(ValueError):
        stage_cost_micros(PRICE, -1, 0)


def test_run_cost_is_sum_of_independently_priced_stages() -> None:
    prices = {PRICE.model: PRICE}
    usages = [
        Usage("a", "fake:echo", 1, 0),
        Usage("b", "fake:echo", 1, 0),
        Usage("render", "", 0, 0),
    ]
    assert price_stages(usages, prices) == [10_000, 10_000, 0]
    assert total_cost_micros(usages, prices) == 20_000
    # Whole cents per stage: the public breakdown always adds up to the run's cost_cents.
    assert sum(c // 10_000 for c in price_stages(usages, prices)) * 10_000 == 20_000


def test_unknown_model_named() -> None:
    with pytest.raises(UnknownModel) as info:
        price_stages([Usage("a", "nope:model", 10, 0)], {})
    assert info.value.model == "nope:model"


def test_unknown_model_without_tokens_is_free() -> None:
    assert price_stages([Usage("a", "nope:model", 0, 0)], {}) == [0]


def test_parse_prices() -> None:
    prices = parse_prices('{"fake:echo": [1000000, 2000000], "local:m": [0, 0]}')
    assert prices["fake:echo"] == Price("fake:echo", 1_000_000, 2_000_000)
    assert prices["local:m"] == Price("local:m", 0, 0)


@pytest.mark.parametrize(
    "raw",
    ["nope", "[]", '{"m:x": [1]}', '{"m:x": [1.5, 2]}', '{"m:x": [-1, 2]}', '{"m:x": [true, 2]}'],
)
def test_parse_prices_fails_fast(raw: str) -> None:
    with pytest.raises(ConfigError):
        parse_prices(raw)
