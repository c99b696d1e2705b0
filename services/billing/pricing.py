"""The one place that turns token counts into money.

Rule: each stage is priced on its own as
    ceil(input_tokens * input_price + output_tokens * output_price) / 1,000,000 tokens)
in micros, then rounded UP to a whole cent. Whole-cent stages make a run's public
breakdown add up: sum(stage cost_cents) == run cost_cents == captured micros / 10,000.
A run's cost (estimate or actual) is the sum of its stage costs.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.billing.money import MICROS_PER_CENT

TOKENS_PER_MTOK = 1_000_000
# The embedded local model is free unless configured otherwise (WEFT_PRICES).
DEFAULT_PRICES: dict[str, tuple[int, int]] = {"local:qwen2.5-coder-1.5b-instruct": (0, 0)}


@dataclass(frozen=True)
class Price:
    model: str
    input_micros_per_mtok: int
    output_micros_per_mtok: int


@dataclass(frozen=True)
class Usage:
    """Tokens of one stage: actual usage, or (input estimate, max output) for an estimate."""

    stage: str
    model: str
    input_tokens: int
    output_tokens: int

    @property
    def billable(self) -> bool:
        return self.input_tokens > 0 or self.output_tokens > 0


class UnknownModel(LookupError):
    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.model = model


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def stage_cost_micros(price: Price, input_tokens: int, output_tokens: int) -> int:
    """Cost of one stage in micros: exact micros rounded up, then up to a whole cent."""
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError("token counts cannot be negative")
    raw = input_tokens * price.input_micros_per_mtok + output_tokens * price.output_micros_per_mtok
    micros = _ceil_div(raw, TOKENS_PER_MTOK)
    return _ceil_div(micros, MICROS_PER_CENT) * MICROS_PER_CENT


def price_stages(usages: Iterable[Usage], prices: Mapping[str, Price]) -> list[int]:
    """Cost per stage, in order. Stages without tokens (template, http, review) cost 0
    whatever their model; a billable stage with an unpriced model raises UnknownModel."""
    costs = []
    for usage in usages:
        if not usage.billable:
            costs.append(0)
            continue
        price = prices.get(usage.model)
        if price is None:
            raise UnknownModel(usage.model)
        costs.append(stage_cost_micros(price, usage.input_tokens, usage.output_tokens))
    return costs


def total_cost_micros(usages: Iterable[Usage], prices: Mapping[str, Price]) -> int:
    """A run's cost: the sum of its independently priced stages."""
    return sum(price_stages(usages, prices))
