"""Capture from JetStream terminal events: actual cost charged, the rest released, exactly
once per run even when the event is redelivered or billing restarts around it."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js import JetStreamContext

from services.billing.service import BillingService
from tests.support.billing import priced_model
from weft.billing.v1 import billing_pb2 as pb
from weft.billing.v1 import billing_pb2_grpc
from weftcore.db import create_pool
from weftcore.events import RUN_COMPLETED, RUN_CREATED, RUN_FAILED, RunEvent
from weftcore.ids import iso, new_id, utcnow
from weftcore.nats import billing_subject, connect, ensure_streams

Stub = billing_pb2_grpc.BillingServiceStub


@pytest.fixture(scope="module")
async def js(stack: Any) -> AsyncIterator[JetStreamContext]:
    nc = await connect(stack.nats_url, "billing-tests")
    context = nc.jetstream()
    await ensure_streams(context)
    yield context
    await nc.drain()


@pytest.fixture(scope="module")
async def model(billing: Stub) -> str:
    """A model only this module uses (1,000 input tokens cost one cent)."""
    return await priced_model(billing, "capture-test")


async def open_run(billing: Stub, model: str, user: str, stages: int = 1) -> str:
    """Reserves 2 cents per stage (1,000 tokens in, 500 max out) for a new run."""
    run_id = new_id("run")
    await billing.Reserve(
        pb.ReserveRequest(
            run_id=run_id,
            payer=pb.Payer(user_id=user, plan="pro"),
            stages=[
                pb.StageEstimate(
                    stage=f"s{i}", model=model, input_tokens=1000, max_output_tokens=500
                )
                for i in range(stages)
            ],
        )
    )
    return run_id


def terminal_event(
    run_id: str, breakdown: list[dict[str, Any]], kind: str = RUN_COMPLETED
) -> bytes:
    status = kind.removeprefix("run.")
    run = {
        "id": run_id,
        "status": status,
        "cost_cents": sum(item["cost_cents"] for item in breakdown),
        "cost_breakdown": breakdown,
    }
    event = RunEvent(
        id=new_id("evt"), type=kind, run_id=run_id, seq=9, created_at=iso(utcnow()), run=run
    )
    return event.to_json()


def llm_stage(stage: str, model: str, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "stage": stage,
        "type": "llm",
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_cents": 1,
        "duration_ms": 5,
    }


async def publish(
    js: JetStreamContext, run_id: str, payload: bytes, kind: str = RUN_COMPLETED
) -> None:
    await js.publish(billing_subject(run_id, kind), payload)


async def ledger_kinds(billing: Stub, account: str, run_id: str) -> list[str]:
    reply = await billing.ListLedger(pb.ListLedgerRequest(account_id=account, limit=1000))
    return sorted(e.kind for e in reply.entries if e.run_id == run_id)


async def wait_captured(billing: Stub, account: str, run_id: str, timeout: float = 30.0) -> None:
    """Poll until the run's capture is in the ledger; the deadline only bounds a hang."""
    deadline = asyncio.get_running_loop().time() + timeout
    while "capture" not in await ledger_kinds(billing, account, run_id):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run {run_id} was never captured")
        await asyncio.sleep(0.1)


async def drain_with_sentinel(billing: Stub, js: JetStreamContext, model: str) -> None:
    """Publishes a later event and waits for it: the consumer handles events in order, so
    everything published before it has been handled too."""
    user = new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=20_000))
    run_id = await open_run(billing, model, user)
    await publish(js, run_id, terminal_event(run_id, [llm_stage("s0", model, 1, 0)]))
    await wait_captured(billing, user, run_id)


async def test_completed_run_is_captured_once_despite_redelivery(
    billing: Stub, js: JetStreamContext, model: str
) -> None:
    user = new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=100_000))
    run_id = await open_run(billing, model, user)
    # 500 in (5,000 micros) + 100 out (2,000 micros) -> one cent; reserved two.
    payload = terminal_event(run_id, [llm_stage("s0", model, 500, 100)])

    await asyncio.gather(*(publish(js, run_id, payload) for _ in range(3)))
    await wait_captured(billing, user, run_id)
    await drain_with_sentinel(billing, js, model)

    assert await ledger_kinds(billing, user, run_id) == ["capture", "release", "reserve"]
    balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=user))
    assert (balance.balance_micros, balance.reserved_micros) == (90_000, 0)
    # The RPC path agrees and does not charge again.
    again = await billing.Capture(
        pb.CaptureRequest(
            run_id=run_id,
            stages=[pb.StageUsage(stage="s0", model=model, input_tokens=500, output_tokens=100)],
        )
    )
    assert (again.already_captured, again.captured_micros, again.released_micros) == (
        True,
        10_000,
        10_000,
    )
    assert (await billing.CheckLedger(pb.CheckLedgerRequest())).ok


async def test_failed_run_pays_only_for_the_stages_that_ran(
    billing: Stub, js: JetStreamContext, model: str
) -> None:
    user = new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=100_000))
    run_id = await open_run(billing, model, user, stages=3)  # 6 cents held

    payload = terminal_event(run_id, [llm_stage("s0", model, 1000, 500)], kind=RUN_FAILED)
    await publish(js, run_id, payload, kind=RUN_FAILED)
    await wait_captured(billing, user, run_id)

    balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=user))
    assert (balance.balance_micros, balance.reserved_micros) == (80_000, 0)


async def test_billing_restarts_around_capture_leave_one_capture(
    billing: Stub, js: JetStreamContext, model: str, stack: Any
) -> None:
    user = new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=100_000))
    run_id = await open_run(billing, model, user)
    payload = terminal_event(run_id, [llm_stage("s0", model, 1000, 0)])

    # Events arrive while billing is down: nothing is lost, the durable consumer waits.
    stack.stop("billing")
    await publish(js, run_id, payload)
    await publish(js, run_id, payload)
    stack.start("billing")
    await wait_captured(billing, user, run_id)

    # Restart again and redeliver after the capture committed.
    stack.stop("billing")
    await publish(js, run_id, payload)
    stack.start("billing")
    await drain_with_sentinel(billing, js, model)

    assert await ledger_kinds(billing, user, run_id) == ["capture", "release", "reserve"]
    balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=user))
    assert (balance.balance_micros, balance.reserved_micros) == (90_000, 0)
    assert (await billing.CheckLedger(pb.CheckLedgerRequest())).ok


async def test_unconfirmed_reservations_expire_and_late_runs_still_pay(
    billing: Stub, js: JetStreamContext, model: str, stack: Any
) -> None:
    user = new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=100_000))
    orphan = await open_run(billing, model, user)  # its run never commits
    committed = await open_run(billing, model, user)
    created = RunEvent(
        id=new_id("evt"), type=RUN_CREATED, run_id=committed, seq=1,
        created_at=iso(utcnow()), run={"id": committed, "status": "pending"},
    )  # fmt: skip
    await js.publish(billing_subject(committed, RUN_CREATED), created.to_json())

    pool = await create_pool(stack.dsn, "billing", min_size=1, max_size=2)
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not await pool.fetchval(
            "SELECT confirmed_at IS NOT NULL FROM reservations WHERE run_id = $1", committed
        ):
            assert asyncio.get_running_loop().time() < deadline, "run.created never confirmed"
            await asyncio.sleep(0.1)
        # Both an hour old: only the unconfirmed one belongs to a run that never committed.
        await pool.execute(
            "UPDATE reservations SET created_at = now() - interval '1 hour'"
            " WHERE run_id = ANY($1::text[])",
            [orphan, committed],
        )
        # A TTL of 30 minutes touches nothing younger that other tests hold open.
        assert await BillingService(pool).expire_stale(1800) >= 1
    finally:
        await pool.close()

    balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=user))
    assert (balance.balance_micros, balance.reserved_micros) == (100_000, 20_000)
    assert await ledger_kinds(billing, user, orphan) == ["release", "reserve"]

    # Should the orphan's run show up after all, it is still charged (from available).
    await publish(js, orphan, terminal_event(orphan, [llm_stage("s0", model, 1000, 500)]))
    await wait_captured(billing, user, orphan)
    balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=user))
    assert (balance.balance_micros, balance.reserved_micros) == (80_000, 20_000)
    assert (await billing.CheckLedger(pb.CheckLedgerRequest())).ok
