"""Prometheus metrics of the billing process (served by weftcore.metrics.MetricsServer)."""

import asyncio
import logging

import asyncpg
from prometheus_client import Counter, Gauge

from services.billing.service import BillingService, CaptureResult
from weftcore.errors import FailedPrecondition, WeftError

log = logging.getLogger(__name__)

RESERVATIONS = Counter(
    "weft_billing_reservations_total",
    "Reservation requests, by outcome: reserved, insufficient, refused, error",
    ["outcome"],
)
CAPTURES = Counter(
    "weft_billing_captures_total",
    "Terminal events settled, by outcome: captured, capped, already_captured, "
    "no_reservation, refused, retry",
    ["outcome"],
)
RESERVATIONS_EXPIRED = Counter(
    "weft_billing_reservations_expired_total",
    "Reservations released by the sweeper because their run.created never came",
)
LEDGER_MISMATCH = Gauge(
    "weft_billing_ledger_mismatched_accounts",
    "Accounts whose cached balances disagree with the ledger at the last check (0: sound)",
)
LEDGER_CHECK_UP = Gauge(
    "weft_billing_ledger_check_up", "1 when the last ledger check ran, 0 when it failed"
)
OPEN_RESERVATIONS = Gauge("weft_billing_open_reservations", "Reservations still open")
OLDEST_OPEN_RESERVATION = Gauge(
    "weft_billing_oldest_open_reservation_seconds", "Age of the oldest open reservation"
)

_OPEN = """
SELECT count(*) AS n,
       COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest
FROM reservations WHERE status = 'open'
"""


def reservation_failed(exc: BaseException) -> None:
    if isinstance(exc, FailedPrecondition):
        RESERVATIONS.labels("insufficient").inc()
    elif isinstance(exc, WeftError):
        RESERVATIONS.labels("refused").inc()
    elif not isinstance(exc, asyncio.CancelledError):
        RESERVATIONS.labels("error").inc()


def captured(result: CaptureResult) -> None:
    if result.already_captured:
        CAPTURES.labels("already_captured").inc()
    elif result.shortfall_micros:
        CAPTURES.labels("capped").inc()
    else:
        CAPTURES.labels("captured").inc()


async def audit_once(billing: BillingService, pool: asyncpg.Pool) -> None:
    """Refresh the ledger-mismatch and open-reservation gauges."""
    try:
        mismatches = await billing.check_ledger()
        async with pool.acquire() as conn:
            row = await conn.fetchrow(_OPEN)
    except asyncio.CancelledError:
        raise
    except Exception:
        LEDGER_CHECK_UP.set(0)
        log.warning("billing audit failed", exc_info=True)
        return
    LEDGER_MISMATCH.set(len(mismatches))
    LEDGER_CHECK_UP.set(1)
    OPEN_RESERVATIONS.set(row["n"])
    OLDEST_OPEN_RESERVATION.set(row["oldest"])


async def audit_loop(billing: BillingService, pool: asyncpg.Pool, interval: float = 60.0) -> None:
    """`audit_once` until cancelled (a weftcore.background task)."""
    while True:
        await audit_once(billing, pool)
        await asyncio.sleep(interval)
