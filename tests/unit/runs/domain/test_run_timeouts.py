"""A run's timeout_seconds: the call's, else the workflow's, else the maximum."""

import pytest

from services.runs.domain.timeouts import run_timeout
from weftcore.errors import InvalidArgument


def test_the_call_then_the_workflow_then_the_maximum() -> None:
    assert run_timeout({"timeout_seconds": 60}, 5, 100) == 5
    assert run_timeout({"timeout_seconds": 60}, None, 100) == 60
    assert run_timeout({}, None, 100) == 100


def test_a_workflow_over_the_maximum_is_held_to_it() -> None:
    assert run_timeout({"timeout_seconds": 500}, None, 100) == 100


@pytest.mark.parametrize("asked", [0, -1, 101])
def test_a_call_outside_the_range_is_refused_naming_the_field(asked: int) -> None:
    with pytest.raises(InvalidArgument) as refused:
        run_timeout({}, asked, 100)
    assert refused.value.param == "timeout_seconds"
