"""Whether any worker is alive, asked over core NATS (no stream, nothing stored).

Workers subscribe to `weft.workers.ping` in one queue group, so one of them answers a
request: an answer means a worker's event loop runs and its NATS link (the one it takes
jobs through) is up. The gateway's /readyz asks.
"""

import nats
import nats.errors
from nats.aio.msg import Msg

WORKERS_PING_SUBJECT = "weft.workers.ping"
WORKERS_QUEUE = "weft-workers"


async def answer_ping(msg: Msg) -> None:
    """A worker's subscription callback."""
    if msg.reply:
        await msg.respond(b"ok")


async def any_worker_alive(nats_url: str, timeout: float) -> bool:
    """True when a worker answered within `timeout`; False when none did (or there are
    none); raises when NATS cannot be reached (nats-py's connect errors)."""
    nc = await nats.connect(
        [u.strip() for u in nats_url.split(",") if u.strip()],
        name="weft-workers-probe",
        allow_reconnect=False,
        connect_timeout=timeout,
        max_reconnect_attempts=0,
    )
    try:
        await nc.request(WORKERS_PING_SUBJECT, b"", timeout=timeout)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return False
    finally:
        await nc.close()
    return True
