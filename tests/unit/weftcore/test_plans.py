"""The paid-plan rule: one error, whichever process applies it."""

from typing import Any

import grpc
import pytest

from services.runs.domain.create import Caller, RunCreator
from weftcore.errors import FailedPrecondition
from weftcore.plans import PAID_PLANS, PLANS, require_paid_plan


@pytest.mark.parametrize("plan", sorted(PAID_PLANS))
def test_paid_plans_pass(plan: str) -> None:
    require_paid_plan(plan)


@pytest.mark.parametrize("plan", ["free", "", "gold"])
def test_other_plans_are_refused_as_failed_precondition(plan: str) -> None:
    with pytest.raises(FailedPrecondition) as refused:
        require_paid_plan(plan)
    assert refused.value.code == "PAID_PLAN_REQUIRED"
    assert refused.value.grpc_code == grpc.StatusCode.FAILED_PRECONDITION


def test_every_plan_but_free_is_paid() -> None:
    assert set(PLANS) - PAID_PLANS == {"free"}


async def test_attachments_of_a_free_plan_caller_are_refused_before_storage() -> None:
    free = Caller(user_id="usr_a", team_id="", plan="free", allowlist=None)
    # No storage: the plan is judged before any attachment is looked up.
    unused: Any = None
    creator = RunCreator(unused, unused, unused, unused, unused, unused)
    with pytest.raises(FailedPrecondition) as refused:
        await creator.check_attachments(free, ["att_1"])
    assert refused.value.code == "PAID_PLAN_REQUIRED"
