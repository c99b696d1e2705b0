"""Which new runs ask billing for a reservation, and which can skip it."""

from typing import Any

import pytest

from services.runs.domain.create import Caller, RunCreator
from weft.billing.v1 import billing_pb2
from weftcore.errors import FailedPrecondition

LLM_STAGE = billing_pb2.StageEstimate(stage="a", model="local:m", max_output_tokens=10)


class FakeBilling:
    def __init__(self) -> None:
        self.reserved: list[billing_pb2.ReserveRequest] = []

    async def Reserve(self, request: billing_pb2.ReserveRequest, timeout: float) -> Any:
        self.reserved.append(request)
        return billing_pb2.Reservation()


def creator(billing: FakeBilling) -> RunCreator:
    unused: Any = None
    return RunCreator(unused, billing, unused, unused, unused, unused)  # type: ignore[arg-type]


def caller(plan: str = "pro", team_id: str = "") -> Caller:
    return Caller(user_id="usr_a", team_id=team_id, plan=plan, allowlist=None)


async def test_a_free_run_on_the_callers_own_account_skips_billing() -> None:
    billing = FakeBilling()
    assert await creator(billing).reserve(caller(), "run_1", []) is False
    assert billing.reserved == []


@pytest.mark.parametrize(
    ("who", "stages"),
    [(caller(), [LLM_STAGE]), (caller("team", team_id="team_t"), [])],
    ids=["priced stage", "team member's free run (allocation check)"],
)
async def test_other_runs_reserve(who: Caller, stages: list[Any]) -> None:
    billing = FakeBilling()
    assert await creator(billing).reserve(who, "run_1", stages) is True
    assert [r.run_id for r in billing.reserved] == ["run_1"]
    assert billing.reserved[0].payer.team_id == who.team_id


async def test_a_free_plan_is_refused_even_when_billing_is_skipped() -> None:
    billing = FakeBilling()
    with pytest.raises(FailedPrecondition) as info:
        await creator(billing).reserve(caller("free"), "run_1", [])
    assert info.value.code == "PAID_PLAN_REQUIRED"
    assert billing.reserved == []
