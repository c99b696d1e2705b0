"""gRPC surface of the billing service: wiring and the servicer (gRPC <-> domain)."""

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

from services.billing import metrics
from services.billing.capture import CaptureConsumer
from services.billing.config import BillingConfig
from services.billing.expiry import ReservationSweeper
from services.billing.pricing import Price, Usage
from services.billing.repository import AccountRow, ReservationRow
from services.billing.service import BillingService, Payer
from weft.billing.v1 import billing_pb2 as pb
from weft.billing.v1 import billing_pb2_grpc
from weftcore.background import BackgroundTasks
from weftcore.config import ServiceConfig
from weftcore.db import create_pool, ping
from weftcore.grpc_server import GrpcServer, batch_item
from weftcore.ids import iso
from weftcore.metrics import watch_consumers
from weftcore.nats import BILLING_STREAM, connect, ensure_streams
from weftcore.service import Check

GRPC_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BillingService"].full_name

log = logging.getLogger(__name__)

Ctx = Any  # grpc.aio.ServicerContext; unused: errors travel as WeftError via the interceptor


def _reserve_args(request: pb.ReserveRequest) -> tuple[str, Payer, list[Usage]]:
    payer = Payer(request.payer.user_id, request.payer.team_id, request.payer.plan)
    stages = [Usage(s.stage, s.model, s.input_tokens, s.max_output_tokens) for s in request.stages]
    return request.run_id, payer, stages


def _reservation(res: ReservationRow) -> pb.Reservation:
    return pb.Reservation(
        run_id=res.run_id,
        account_id=res.account_id,
        amount_micros=res.amount_micros,
        status=res.status,
    )


def _balance(acc: AccountRow) -> pb.Balance:
    return pb.Balance(
        account_id=acc.account_id,
        balance_micros=acc.balance_micros,
        reserved_micros=acc.reserved_micros,
        available_micros=acc.available_micros,
    )


def _price(p: Price) -> pb.Price:
    return pb.Price(
        model=p.model,
        input_micros_per_mtok=p.input_micros_per_mtok,
        output_micros_per_mtok=p.output_micros_per_mtok,
    )


def _usages(stages: Any) -> list[Usage]:
    return [Usage(s.stage, s.model, s.input_tokens, s.output_tokens) for s in stages]


class BillingServiceServicer(billing_pb2_grpc.BillingServiceServicer):
    def __init__(self, billing: BillingService) -> None:
        self.billing = billing

    async def Reserve(self, request: pb.ReserveRequest, context: Ctx) -> pb.Reservation:
        try:
            row = await self.billing.reserve(
                *_reserve_args(request), max_amount=request.max_amount_micros
            )
        except BaseException as exc:
            metrics.reservation_failed(exc)
            raise
        metrics.RESERVATIONS.labels("reserved").inc()
        return _reservation(row)

    async def ReserveMany(
        self, request: pb.ReserveManyRequest, context: Ctx
    ) -> pb.ReserveManyResponse:
        requests = list(request.requests)
        outcomes: dict[int, pb.ReserveOutcome] = {}
        # Users' own reservations share statements; whatever they did not reserve (refused,
        # reserved before, an error) and team members' are answered one by one.
        own = [
            i
            for i, r in enumerate(requests)
            if self.billing.is_own(*_reserve_args(r)[:2]) and not r.max_amount_micros
        ]
        if len(own) > 1:
            try:
                rows = await self.billing.reserve_own_many(
                    [_reserve_args(requests[i]) for i in own]
                )
            except Exception:
                log.exception("batch reserve failed; reserving one by one")
            else:
                for i, row in zip(own, rows, strict=True):
                    if row is not None:
                        metrics.RESERVATIONS.labels("reserved").inc()
                        outcomes[i] = pb.ReserveOutcome(reservation=_reservation(row))
        rest = [i for i in range(len(requests)) if i not in outcomes]
        answers = await asyncio.gather(*(self._reserve_outcome(requests[i]) for i in rest))
        outcomes.update(zip(rest, answers, strict=True))
        return pb.ReserveManyResponse(outcomes=[outcomes[i] for i in range(len(requests))])

    async def _reserve_outcome(self, request: pb.ReserveRequest) -> pb.ReserveOutcome:
        answer, error = await batch_item(request.request_id, self.Reserve(request, None))
        return pb.ReserveOutcome(reservation=answer, error=error)

    async def Capture(self, request: pb.CaptureRequest, context: Ctx) -> pb.CaptureResponse:
        result = await self.billing.capture(request.run_id, _usages(request.stages))
        return pb.CaptureResponse(
            run_id=result.run_id,
            captured_micros=result.captured_micros,
            released_micros=result.released_micros,
            already_captured=result.already_captured,
        )

    async def Release(self, request: pb.ReleaseRequest, context: Ctx) -> pb.Reservation:
        return _reservation(await self.billing.release(request.run_id))

    async def PriceUsage(
        self, request: pb.PriceUsageRequest, context: Ctx
    ) -> pb.PriceUsageResponse:
        costs = await self.billing.price_usage(_usages(request.stages))
        return pb.PriceUsageResponse(cost_micros=costs)

    async def Grant(self, request: pb.GrantRequest, context: Ctx) -> pb.Balance:
        account = await self.billing.grant(request.account_id, request.amount_micros, request.note)
        return _balance(account)

    async def GetBalance(self, request: pb.GetBalanceRequest, context: Ctx) -> pb.Balance:
        return _balance(await self.billing.balance(request.account_id))

    async def ListLedger(
        self, request: pb.ListLedgerRequest, context: Ctx
    ) -> pb.ListLedgerResponse:
        rows = await self.billing.ledger(request.account_id, request.limit)
        return pb.ListLedgerResponse(
            entries=[
                pb.LedgerEntry(
                    id=r.id,
                    account_id=r.account_id,
                    kind=r.kind,
                    amount_micros=r.amount_micros,
                    run_id=r.run_id or "",
                    user_id=r.user_id,
                    note=r.note,
                    created_at=iso(r.created_at),
                )
                for r in rows
            ]
        )

    async def SetPrice(self, request: pb.SetPriceRequest, context: Ctx) -> pb.Price:
        p = request.price
        price = Price(p.model, p.input_micros_per_mtok, p.output_micros_per_mtok)
        return _price(await self.billing.set_price(price))

    async def ListPrices(
        self, request: pb.ListPricesRequest, context: Ctx
    ) -> pb.ListPricesResponse:
        return pb.ListPricesResponse(prices=[_price(p) for p in await self.billing.list_prices()])

    async def SetAllocation(self, request: pb.SetAllocationRequest, context: Ctx) -> pb.Allocation:
        spent = await self.billing.set_allocation(
            request.team_id, request.user_id, request.monthly_micros
        )
        return pb.Allocation(
            team_id=request.team_id,
            user_id=request.user_id,
            monthly_micros=request.monthly_micros,
            spent_this_month_micros=spent,
        )

    async def CheckLedger(
        self, request: pb.CheckLedgerRequest, context: Ctx
    ) -> pb.CheckLedgerResponse:
        found = await self.billing.check_ledger()
        return pb.CheckLedgerResponse(
            ok=not found,
            mismatches=[
                pb.LedgerMismatch(
                    account_id=m.account_id,
                    cached_balance_micros=m.cached_balance,
                    ledger_balance_micros=m.ledger_balance,
                    cached_reserved_micros=m.cached_reserved,
                    ledger_reserved_micros=m.ledger_reserved,
                )
                for m in found
            ],
        )


async def wire(
    config: ServiceConfig, server: GrpcServer, stack: AsyncExitStack
) -> dict[str, Check]:
    billing_config = BillingConfig.from_env()
    pool = await create_pool(config.database_url, "billing", light_reset=True)
    stack.push_async_callback(pool.close)
    billing = BillingService(pool)
    await billing.seed_prices(list(billing_config.default_prices.values()))
    billing_pb2_grpc.add_BillingServiceServicer_to_server(
        BillingServiceServicer(billing), server.server
    )

    nc = await connect(config.nats_url, "billing")
    stack.push_async_callback(nc.drain)
    js = nc.jetstream()
    await ensure_streams(js)
    consumer = CaptureConsumer(js, billing, billing_config.consumer_name)
    await consumer.subscribe()
    # The exit stack unwinds in reverse: the loops stop, then the consumer unsubscribes,
    # then NATS drains and the pool closes.
    stack.push_async_callback(consumer.unsubscribe)
    sweeper = ReservationSweeper(
        billing, billing_config.reservation_ttl_seconds, billing_config.sweep_interval_seconds
    )
    tasks = BackgroundTasks()
    stack.push_async_callback(tasks.close)
    tasks.start("billing-capture", consumer.run)
    tasks.start("billing-sweeper", sweeper.run)
    tasks.start("billing-audit", lambda: metrics.audit_loop(billing, pool))
    tasks.start(
        "consumer-metrics",
        lambda: watch_consumers(js, [(BILLING_STREAM, billing_config.consumer_name)]),
    )

    async def database() -> bool:
        return await ping(pool)

    async def nats() -> bool:
        return bool(nc.is_connected)

    return {"database": database, "nats": nats}
