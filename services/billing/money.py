"""Money as integer micro-dollars (1 USD = 1,000,000 micros): parsing and display.

Floats never touch money: dollar strings are parsed with `decimal.Decimal`, and every
rounding to cents goes up (a customer is never shown less than they pay).
"""

from decimal import Decimal, InvalidOperation

MICROS_PER_USD = 1_000_000
MICROS_PER_CENT = 10_000


class MoneyError(ValueError):
    """A dollar amount that is not a finite, non-negative number with at most 6 decimals."""


def parse_usd(text: str, *, allow_zero: bool = True) -> int:
    """`"12.50"` -> 12_500_000 micros. Refuses negatives, NaN/inf and sub-micro precision."""
    raw = text.strip().removeprefix("$")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise MoneyError(f"not a dollar amount: {text!r}") from None
    if not value.is_finite():
        raise MoneyError(f"not a dollar amount: {text!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise MoneyError(f"amount must be {'>=' if allow_zero else '>'} 0: {text!r}")
    micros = value * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise MoneyError(f"at most 6 decimal places (one micro-dollar): {text!r}")
    return int(micros)


def micros_to_cents_ceil(micros: int) -> int:
    """Whole cents, rounded up: the public `cost_cents`."""
    return -(-micros // MICROS_PER_CENT)


def format_usd_ceil(micros: int) -> str:
    """`$X.XX` rounded up to the cent, e.g. 1_234 micros -> `$0.01`."""
    cents = micros_to_cents_ceil(micros)
    return f"${cents // 100}.{cents % 100:02d}"


def format_usd_exact(micros: int) -> str:
    """Exact decimal dollars for admin output, e.g. 12_500_000 -> `12.5`."""
    sign = "-" if micros < 0 else ""
    value = Decimal(abs(micros)) / MICROS_PER_USD
    text = format(value.normalize(), "f")
    return f"{sign}{text}"
