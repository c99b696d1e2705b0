"""Notifier routes each channel's notifications to its own listener."""

import asyncio

from services.runs.store.notify import (
    OUTBOX_CHANNEL,
    RUN_STATUS_CHANNEL,
    WEBHOOKS_CHANNEL,
    Notifier,
)


def test_each_channel_wakes_only_its_listener() -> None:
    woke: list[str] = []
    notifier = Notifier(
        "postgresql://unused", "runs", lambda: woke.append("relay"), lambda: woke.append("hooks")
    )
    watcher = notifier.watch("run_1")
    other = notifier.watch("run_2")
    notifier.dispatch(WEBHOOKS_CHANNEL, "")
    assert woke == ["hooks"]
    notifier.dispatch(OUTBOX_CHANNEL, "")
    assert woke == ["hooks", "relay"]
    notifier.dispatch(RUN_STATUS_CHANNEL, "run_1")
    assert watcher.is_set() and not other.is_set()
    assert isinstance(watcher, asyncio.Event)
