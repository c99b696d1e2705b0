"""Releases reservations of runs that never committed (see migration 0003)."""

import asyncio
import logging

from services.billing.metrics import RESERVATIONS_EXPIRED
from services.billing.service import BillingService

log = logging.getLogger(__name__)


class ReservationSweeper:
    """Every `interval` seconds, releases unconfirmed reservations older than `ttl`.

    Safe with many replicas: each release re-checks the row under its lock.
    """

    def __init__(self, billing: BillingService, ttl: float, interval: float) -> None:
        self.billing = billing
        self.ttl = ttl
        self.interval = interval

    async def run(self) -> None:
        """Sweep until cancelled (a weftcore.background task)."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                RESERVATIONS_EXPIRED.inc(await self.billing.expire_stale(self.ttl))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reservation sweep failed")
