"""services.billing.metrics: reservation and capture outcomes."""

import asyncio

import pytest
from prometheus_client import REGISTRY

from services.billing.metrics import captured, reservation_failed
from services.billing.service import CaptureResult
from weftcore.errors import FailedPrecondition, InvalidArgument


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (FailedPrecondition("no credits"), "insufficient"),
        (InvalidArgument("bad"), "refused"),
        (RuntimeError("db"), "error"),
    ],
)
def test_reservation_failures_by_outcome(exc: Exception, outcome: str) -> None:
    before = sample("weft_billing_reservations_total", outcome=outcome)
    reservation_failed(exc)
    assert sample("weft_billing_reservations_total", outcome=outcome) == before + 1


def test_a_cancelled_reservation_is_no_outcome() -> None:
    before = {o: sample("weft_billing_reservations_total", outcome=o) for o in ("error",)}
    reservation_failed(asyncio.CancelledError())
    assert sample("weft_billing_reservations_total", outcome="error") == before["error"]


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        (CaptureResult("run_1", 10, 0, False), "captured"),
        (CaptureResult("run_1", 10, 0, True), "already_captured"),
        (CaptureResult("run_1", 10, 0, False, shortfall_micros=5), "capped"),
    ],
)
def test_capture_outcomes(result: CaptureResult, outcome: str) -> None:
    before = sample("weft_billing_captures_total", outcome=outcome)
    captured(result)
    assert sample("weft_billing_captures_total", outcome=outcome) == before + 1
