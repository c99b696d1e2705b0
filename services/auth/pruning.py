"""Drops expired sessions and invites and old failed sign-ins, every few minutes."""

import asyncio
import logging
from datetime import timedelta

from services.auth.people import PeopleConfig
from services.auth.people_repository import PeopleRepository
from weftcore.ids import utcnow

log = logging.getLogger(__name__)
PRUNE_EVERY_SECONDS = 600.0


async def prune_forever(repo: PeopleRepository, config: PeopleConfig) -> None:
    while True:
        await asyncio.sleep(PRUNE_EVERY_SECONDS)
        now = utcnow()
        try:
            await repo.prune(now, now - timedelta(seconds=config.failure_window_seconds))
        except Exception:
            log.warning("could not prune sessions; will retry", exc_info=True)
