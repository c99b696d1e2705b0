"""How much of a finished run's actual cost is captured.

The estimate reserved before a run can undercount (weftcore/tokens.py guesses prompt
tokens from bytes; an answer can be longer than the reservation assumed), so the actual
cost may exceed it. The capture is the actual cost, clamped so that

- an account's balance never goes negative: at most the reservation plus what the
  account still has available;
- a team member never spends more than their monthly allocation: at most what the
  allocation still allows (the allocation minus what the member captured this month and
  holds in other open reservations). Up to its own reservation a run is within the
  allocation it was admitted under, so only a cost above the reservation is checked.

What is not charged (the shortfall) goes into the capture's ledger note and the log, so
operators see it; the run itself keeps its actual usage and cost in `cost_breakdown`.
"""

from dataclasses import dataclass

AVAILABLE_CREDITS = "available credits"
MEMBER_ALLOCATION = "the member's monthly allocation"


@dataclass(frozen=True)
class Charge:
    charged: int
    released: int  # of the reservation, given back
    shortfall: int  # actual cost not charged
    capped_by: str  # which limit clamped it ("" when none did)

    def note(self, cost: int) -> str:
        """The capture's ledger note ("" when the whole cost was charged)."""
        if not self.shortfall:
            return ""
        return (
            f"capped at {self.capped_by}: actual cost {cost} micros,"
            f" {self.shortfall} micros not charged"
        )


def charge(cost: int, held: int, available: int, allowance: int | None) -> Charge:
    """The capture of a run that cost `cost` and held `held`, when the account has
    `available` beyond all its reservations and, for a team member, the allocation still
    allows `allowance` (this run's own reservation not counted as spent); None: no
    allocation applies (the payer's own credits)."""
    limits = [(AVAILABLE_CREDITS, held + available)]
    if allowance is not None:
        limits.append((MEMBER_ALLOCATION, allowance))
    charged, capped_by = cost, ""
    for why, limit in limits:
        if charged > max(0, limit):
            charged, capped_by = max(0, limit), why
    return Charge(charged, held - min(charged, held), cost - charged, capped_by)


@dataclass(frozen=True)
class OwnRun:
    """A run to capture from its payer's own credits (no allocation applies)."""

    account_id: str
    cost: int
    held: int


def charge_in_turn(runs: list[OwnRun], available: dict[str, int]) -> list[Charge]:
    """`charge` for each run in turn, as one capture after another would: each run sees
    what the runs before it on the same account left available (`available`: each
    account's balance minus its reservations, before the first)."""
    left = dict(available)
    charges = []
    for run in runs:
        done = charge(run.cost, run.held, left.get(run.account_id, 0), None)
        # Its reservation is given back and its charge taken from the balance.
        left[run.account_id] = left.get(run.account_id, 0) + run.held - done.charged
        charges.append(done)
    return charges
