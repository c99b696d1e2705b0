"""A new run's concurrency limits: its workflow's, and its account's by plan."""

from services.runs.domain.concurrency import run_limits


def test_the_workflow_and_the_plan_give_the_limits() -> None:
    plans = {"pro": 0, "team": 3}
    assert run_limits({"concurrency_limit": 2}, "pro", plans) == (2, None)
    assert run_limits({}, "team", plans) == (None, 3)
    assert run_limits({}, "enterprise", plans) == (None, None)  # unknown plan: none
