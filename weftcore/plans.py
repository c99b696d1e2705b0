"""The plans, and the one rule that using the API needs a paid one.

The gateway checks it on every authenticated request; the runs and billing services
check it again because internal callers reach them over gRPC without the gateway.
Everywhere it is the same error: FAILED_PRECONDITION with reason PAID_PLAN_REQUIRED,
which the gateway answers as 402.
"""

from weftcore.errors import FailedPrecondition

FREE_PLAN = "free"
PAID_PLANS = frozenset({"pro", "team", "enterprise"})
# Every plan a user or team can have, cheapest first (admin choices, auth validation).
PLANS = (FREE_PLAN, "pro", "team", "enterprise")

PAID_PLAN_REQUIRED = "PAID_PLAN_REQUIRED"
_MESSAGE = "API access needs a paid plan. Upgrade to pro, team or enterprise."


def is_paid(plan: str) -> bool:
    return plan in PAID_PLANS


def require_paid_plan(plan: str) -> None:
    """FailedPrecondition PAID_PLAN_REQUIRED unless `plan` is a paid one (an empty or
    unknown plan is not)."""
    if not is_paid(plan):
        raise FailedPrecondition(_MESSAGE, code=PAID_PLAN_REQUIRED)
