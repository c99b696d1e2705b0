"""The relay's ack classification: stored (also as a duplicate) vs refused."""

import asyncio
from typing import Any

import pytest

from services.runs.delivery.outbox import OutboxRelay, PublishRefused


class Ack:
    def __init__(self, token: str, data: bytes, headers: Any = None) -> None:
        self.subject = f"_INBOX.relay.{token}"
        self.data = data
        self.headers = headers


@pytest.mark.parametrize(
    ("data", "stored"),
    [
        (b'{"stream":"RUNS","seq":7}', True),
        (b'{"stream":"RUNS","seq":7,"duplicate":true}', True),
        (b'{"error":{"code":503,"err_code":10077,"description":"insufficient resources"}}', False),
        (b"", False),  # no stream for the subject: an empty 503 status message
    ],
)
async def test_acks_settle_their_publish(data: bytes, stored: bool) -> None:
    relay = OutboxRelay(pool=None, nc=None)  # type: ignore[arg-type]
    ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    relay._acks["41"] = ack
    await relay.on_ack(Ack("41", data, {"Status": "503"} if not data else None))  # type: ignore[arg-type]
    if stored:
        assert ack.result() is None
    else:
        with pytest.raises(PublishRefused):
            ack.result()
    assert "41" not in relay._acks


async def test_a_late_ack_is_ignored() -> None:
    relay = OutboxRelay(pool=None, nc=None)  # type: ignore[arg-type]
    await relay.on_ack(Ack("99", b'{"stream":"RUNS","seq":1}'))  # type: ignore[arg-type]
    assert relay._acks == {}
