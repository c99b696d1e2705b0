"""What a capture charges when the actual cost passes the estimate (capping.py): never
past what the account has, never past what a member's allocation still allows, and the
shortfall said in the ledger note."""

import pytest

from services.billing.capping import (
    AVAILABLE_CREDITS,
    MEMBER_ALLOCATION,
    Charge,
    OwnRun,
    charge,
    charge_in_turn,
)


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


def test_runs_in_turn_see_what_the_runs_before_left() -> None:
    # Account a has 100 available beyond its holds; b has nothing beyond them.
    runs = [
        OwnRun("a", cost=300, held=500),  # 200 given back: a now has 300
        OwnRun("b", cost=900, held=400),  # capped at its own hold
        OwnRun("a", cost=900, held=500),  # 500 held + 300 left: capped at 800
        OwnRun("a", cost=100, held=100),  # nothing left beyond its own hold: still 100
    ]
    assert charge_in_turn(runs, {"a": 100, "b": 0}) == [
        Charge(300, 200, 0, ""),
        Charge(400, 0, 500, AVAILABLE_CREDITS),
        Charge(800, 0, 100, AVAILABLE_CREDITS),
        Charge(100, 0, 0, ""),
    ]


def test_runs_in_turn_are_charged_one_after_another() -> None:
    runs = [OwnRun("a", cost, held) for cost, held in [(50, 10), (0, 20), (70, 70), (30, 0)]]
    available = 40
    expected = []
    for run in runs:
        done = charge(run.cost, run.held, available, None)
        available += run.held - done.charged
        expected.append(done)
    assert charge_in_turn(runs, {"a": 40}) == expected


def test_an_account_never_seen_has_nothing_available() -> None:
    assert charge_in_turn([OwnRun("new", cost=10_000, held=0)], {}) == [
        Charge(0, 0, 10_000, AVAILABLE_CREDITS)
    ]
