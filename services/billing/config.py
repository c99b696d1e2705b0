"""Billing settings, read once from the environment."""

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.billing.pricing import DEFAULT_PRICES, Price
from weftcore.config import ConfigError, env_float, env_str


def parse_prices(raw: str) -> dict[str, Price]:
    """`{"model": [input_micros_per_mtok, output_micros_per_mtok]}` -> prices; fail fast."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"WEFT_PRICES is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("WEFT_PRICES must be a JSON object of model -> [input, output]")
    prices: dict[str, Price] = {}
    for model, pair in data.items():
        if (
            not isinstance(model, str)
            or not model
            or not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pair)
        ):
            raise ConfigError(
                f"WEFT_PRICES[{model!r}] must be [input_micros_per_mtok, output_micros_per_mtok]"
                " as non-negative integers"
            )
        prices[model] = Price(model, pair[0], pair[1])
    return prices


@dataclass(frozen=True)
class BillingConfig:
    # Seeded at startup for models not priced yet; SetPrice changes them later.
    default_prices: dict[str, Price] = field(default_factory=dict)
    consumer_name: str = "billing-capture"
    # An open reservation whose run.created event has not arrived after this long belongs
    # to a run that never committed; the sweeper releases it.
    reservation_ttl_seconds: float = 900.0
    sweep_interval_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "BillingConfig":
        source = os.environ if env is None else env
        prices = {m: Price(m, i, o) for m, (i, o) in DEFAULT_PRICES.items()}
        prices.update(parse_prices(source.get("WEFT_PRICES", "") or "{}"))
        return cls(
            default_prices=prices,
            consumer_name=env_str("WEFT_BILLING_CONSUMER", "billing-capture", source),
            reservation_ttl_seconds=env_float(
                "WEFT_BILLING_RESERVATION_TTL_SECONDS", 900.0, source
            ),
            sweep_interval_seconds=env_float("WEFT_BILLING_SWEEP_INTERVAL_SECONDS", 60.0, source),
        )
