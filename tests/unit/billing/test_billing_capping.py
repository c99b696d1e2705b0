"""What a capture charges when the actual cost passes the estimate (capping.py): never
past what the account has, never past what a member's allocation still allows, and the
shortfall said in the ledger note."""

import pytest

from services.billing.capping import AVAILABLE_CREDITS, MEMBER_ALLOCATION, Charge, charge


@pytest.mark.parametrize(
    ("cost", "held", "available", "allowance", "expected"),
    [
        # Within the reservation: the cost, the rest released.
        (300, 500, 0, None, Charge(300, 200, 0, "")),
        (300, 500, 0, 1_000, Charge(300, 200, 0, "")),
        # Over it, the account has enough and no allocation applies: the whole cost.
        (800, 500, 1_000, None, Charge(800, 0, 0, "")),
        # Over it and over the account: what the account has (never negative).
        (800, 500, 100, None, Charge(600, 0, 200, AVAILABLE_CREDITS)),
        # A team member: at most what the allocation allows, however rich the team.
        (800, 500, 1_000_000, 650, Charge(650, 0, 150, MEMBER_ALLOCATION)),
        (800, 500, 1_000_000, 800, Charge(800, 0, 0, "")),
        # Both limits: the lower one wins.
        (800, 500, 50, 650, Charge(550, 0, 250, AVAILABLE_CREDITS)),
        (800, 500, 200, 650, Charge(650, 0, 150, MEMBER_ALLOCATION)),
        # An allocation lowered below what was reserved (or already spent elsewhere).
        (800, 500, 1_000, 300, Charge(300, 200, 500, MEMBER_ALLOCATION)),
        (800, 500, 1_000, -100, Charge(0, 500, 800, MEMBER_ALLOCATION)),
        # Nothing held (an expired reservation): only what is available.
        (800, 0, 300, None, Charge(300, 0, 500, AVAILABLE_CREDITS)),
    ],
)
def test_charge(
    cost: int, held: int, available: int, allowance: int | None, expected: Charge
) -> None:
    assert charge(cost, held, available, allowance) == expected


def test_the_note_names_the_limit_the_cost_and_the_shortfall() -> None:
    capped = charge(800, 500, 1_000_000, 650)
    assert capped.note(800) == (
        "capped at the member's monthly allocation: actual cost 800 micros, 150 micros not charged"
    )
    assert charge(300, 500, 0, 650).note(300) == ""
