"""Captures finished runs from JetStream: terminal run events -> BillingService.capture.

Reads billing's copies of the events (weftcore.nats.BILLING_STREAM), which the runs
service publishes only for runs that hold a reservation: run.created confirms the
reservation, a terminal event captures it.

A durable pull consumer; a message is acked only after the capture transaction
committed, so a crash anywhere before the ack means redelivery, and redelivery is
harmless because capture is idempotent on run_id (row lock + unique ledger entry).
"""

import asyncio
import logging
from typing import Any

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.billing.metrics import CAPTURES, captured
from services.billing.pricing import Usage
from services.billing.repository import FreeCapture
from services.billing.service import BillingService, CaptureResult
from weftcore import tracing
from weftcore.errors import InvalidArgument, NotFound
from weftcore.events import RUN_CREATED, RunEvent
from weftcore.logs import error_text
from weftcore.nats import BILLING_STREAM

log = logging.getLogger(__name__)

ACK_WAIT_SECONDS = 5.0
FETCH_SECONDS = 1.0


def usages_from_event(event: RunEvent) -> list[Usage]:
    """The stages that ran, from the run snapshot's `cost_breakdown` (stages that never
    ran are absent, so canceled and failed runs pay only for what ran)."""
    usages = []
    for item in event.run.get("cost_breakdown") or []:
        usages.append(
            Usage(
                stage=str(item.get("stage") or ""),
                model=str(item.get("model") or ""),
                input_tokens=_tokens(item.get("input_tokens")),
                output_tokens=_tokens(item.get("output_tokens")),
            )
        )
    return usages


def _tokens(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"token count must be a non-negative integer, got {value!r}")
    return value


class CaptureConsumer:
    """Pulls billing's copies of run events: confirms reservations on run.created and
    captures each finished run. `subscribe()`, then `run()` as a background task, then
    `unsubscribe()` once it is cancelled."""

    def __init__(
        self, js: JetStreamContext, billing: BillingService, durable: str, batch: int = 64
    ) -> None:
        self.js = js
        self.billing = billing
        self.durable = durable
        self.batch = batch
        self._sub: JetStreamContext.PullSubscription | None = None

    async def subscribe(self) -> None:
        """Create the durable consumer (idempotent) and bind to it."""
        await self.js.add_consumer(
            BILLING_STREAM,
            ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                # Short: a message handed to a pull request of a replica that just
                # stopped is redelivered after this; a capture takes milliseconds.
                ack_wait=ACK_WAIT_SECONDS,
                max_ack_pending=256,
            ),
        )
        self._sub = await self.js.pull_subscribe_bind(durable=self.durable, stream=BILLING_STREAM)

    async def unsubscribe(self) -> None:
        if self._sub is not None:
            # No interest left: the server stops handing us messages we would never ack.
            await self._sub.unsubscribe()
            self._sub = None

    async def run(self) -> None:
        """Fetch and capture until cancelled (a weftcore.background task)."""
        sub = self._sub
        if sub is None:
            raise RuntimeError("subscribe() before run()")
        while True:
            try:
                msgs = await sub.fetch(self.batch, timeout=FETCH_SECONDS)
            except NatsTimeout:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # NATS down or reconnecting: back off and try again, never die.
                log.warning("fetch failed", extra={"error": error_text(exc)})
                await asyncio.sleep(1)
                continue
            await self.handle_batch(msgs)

    async def handle_batch(self, msgs: list[Msg]) -> None:
        """`handle` for every message of a fetch, sharing statements where it can: one
        confirm for all run.created events, one zero capture for all free runs that
        held nothing, one transaction for the runs that spent tokens on their payers' own
        credits. Everything else goes through `handle`, one by one."""
        with tracing.message_spans("billing event", (m.headers for m in msgs)):
            await self._handle_batch(msgs)

    async def _handle_batch(self, msgs: list[Msg]) -> None:
        created: list[tuple[Msg, RunEvent]] = []
        free: list[tuple[Msg, RunEvent]] = []
        priced: list[tuple[Msg, RunEvent, list[Usage]]] = []
        rest: list[Msg] = []
        for msg in msgs:
            try:
                event = RunEvent.from_json(msg.data)
                usages = usages_from_event(event) if event.terminal else []
            except Exception:
                rest.append(msg)  # `handle` says why and terminates it
                continue
            if event.type == RUN_CREATED:
                created.append((msg, event))
            elif event.terminal and not _spent_tokens(usages):
                free.append((msg, event))
            elif event.terminal:
                priced.append((msg, event, usages))
            else:
                rest.append(msg)
        if len(created) > 1:
            try:
                await self.billing.confirm_many([event.run_id for _, event in created])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("confirm failed; will retry one by one")
            else:
                for msg, _ in created:
                    await msg.ack()
                created = []
        done = FreeCapture(set(), set())
        if len(free) > 1:
            try:
                done = await self.billing.capture_free([event.run_id for _, event in free])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch capture failed; will capture one by one")
        for msg, event in free:
            if event.run_id in done.captured:
                await msg.ack()
                CAPTURES.labels("captured").inc()
                log.info("captured", extra={"run_id": event.run_id, "captured_micros": 0})
            elif event.run_id in done.unreserved:
                await msg.ack()  # never reserved (a run from before 0008): nothing to capture
                CAPTURES.labels("no_reservation").inc()
            else:
                rest.append(msg)
        rest += await self._capture_priced(priced)
        for msg in [m for m, _ in created] + rest:
            await self.handle(msg)

    async def _capture_priced(self, priced: list[tuple[Msg, RunEvent, list[Usage]]]) -> list[Msg]:
        """Captures runs that spent tokens in one transaction and acks them; answers the
        messages left for `handle` (all of them when the transaction failed)."""
        if len(priced) < 2:
            return [msg for msg, _, _ in priced]
        try:
            results = await self.billing.capture_many(
                [(event.run_id, usages) for _, event, usages in priced]
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batch capture failed; will capture one by one")
            return [msg for msg, _, _ in priced]
        left = []
        for msg, event, _ in priced:
            result = results.get(event.run_id)
            if result is None:
                left.append(msg)
                continue
            await msg.ack()
            _log_captured(result)
        return left

    async def _confirm(self, msg: Msg, run_id: str) -> None:
        try:
            await self.billing.confirm(run_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("confirm failed; will retry", extra={"run_id": run_id})
            await msg.nak(delay=2)
            return
        await msg.ack()

    async def handle(self, msg: Msg) -> None:
        """Capture one event; ack after commit, nak (retry later) on transient faults."""
        try:
            event = RunEvent.from_json(msg.data)
            usages = usages_from_event(event) if event.terminal else []
        except Exception as exc:
            # A malformed event will never parse: keep it out of the way, loudly.
            log.error(
                "unreadable run event", extra={"subject": msg.subject, "error": error_text(exc)}
            )
            await msg.term()
            return
        if event.type == RUN_CREATED:
            await self._confirm(msg, event.run_id)
            return
        try:
            result = await self.billing.capture(event.run_id, usages)
        except NotFound:
            # Copies come only for runs that reserved, except runs created before the
            # runs service recorded that (it assumes they did). Nothing to capture.
            if _spent_tokens(usages):
                log.warning("terminal event without reservation", extra={"run_id": event.run_id})
            await msg.ack()
            CAPTURES.labels("no_reservation").inc()
            return
        except InvalidArgument as exc:
            log.error("capture refused", extra={"run_id": event.run_id, "error": exc.message})
            await msg.term()
            CAPTURES.labels("refused").inc()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("capture failed; will retry", extra={"run_id": event.run_id})
            await msg.nak(delay=2)
            CAPTURES.labels("retry").inc()
            return
        await msg.ack()
        _log_captured(result)


def _log_captured(result: CaptureResult) -> None:
    captured(result)
    log.info(
        "captured",
        extra={
            "run_id": result.run_id,
            "captured_micros": result.captured_micros,
            "released_micros": result.released_micros,
            "already_captured": result.already_captured,
            "shortfall_micros": result.shortfall_micros,
        },
    )


def _spent_tokens(usages: list[Usage]) -> bool:
    return any(u.input_tokens or u.output_tokens for u in usages)
