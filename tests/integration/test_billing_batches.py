"""Batched billing against the real stack: a ReserveMany reserves users' own priced runs
in one statement and a batch of priced runs is captured in one transaction, each run's
answer and charge exactly what one by one would give."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import pytest
from nats.js import JetStreamContext

from services.billing.pricing import Usage
from services.billing.service import BillingService, CaptureResult
from tests.support.billing import priced_model
from weft.billing.v1 import billing_pb2 as pb
from weft.billing.v1 import billing_pb2_grpc
from weftcore.db import create_pool
from weftcore.errors import from_rpc_error, from_status_bytes
from weftcore.events import RUN_COMPLETED, RunEvent
from weftcore.ids import iso, new_id, utcnow
from weftcore.nats import BILLING_STREAM, billing_subject, connect, ensure_streams

Stub = billing_pb2_grpc.BillingServiceStub


@pytest.fixture(scope="module")
async def model(billing: Stub) -> str:
    """A model only this module uses (1,000 input tokens cost one cent)."""
    return await priced_model(billing, "batch-test")


@pytest.fixture(scope="module")
async def js(stack: Any) -> AsyncIterator[JetStreamContext]:
    nc = await connect(stack.nats_url, "billing-batch-tests")
    context = nc.jetstream()
    await ensure_streams(context)
    yield context
    await nc.drain()


@pytest.fixture
async def pool(stack: Any) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(stack.dsn, "billing", min_size=1, max_size=2)
    yield pool
    await pool.close()


def cents(model: str, n: int) -> pb.StageEstimate:
    """An estimate of `n` cents: 1,000 input tokens per cent."""
    return pb.StageEstimate(stage="s", model=model, input_tokens=1000 * n)


@dataclass(frozen=True)
class Scenario:
    """Fresh payers and runs for one pass: two own accounts, a team member."""

    alice: str
    bob: str
    team: str
    member: str
    earlier: str  # alice's run reserved before the batch


async def scenario(billing: Stub, model: str) -> Scenario:
    s = Scenario(new_id("usr"), new_id("usr"), new_id("team"), new_id("usr"), new_id("run"))
    await billing.Grant(pb.GrantRequest(account_id=s.alice, amount_micros=50_000))
    await billing.Grant(pb.GrantRequest(account_id=s.bob, amount_micros=20_000))
    await billing.Grant(pb.GrantRequest(account_id=s.team, amount_micros=100_000))
    await billing.SetAllocation(
        pb.SetAllocationRequest(team_id=s.team, user_id=s.member, monthly_micros=15_000)
    )
    await billing.Reserve(
        pb.ReserveRequest(
            run_id=s.earlier, payer=pb.Payer(user_id=s.alice, plan="pro"), stages=[cents(model, 1)]
        )
    )
    return s


def requests(s: Scenario, model: str) -> list[pb.ReserveRequest]:
    """Alice (5 cents, 1 held before): 2 fit, the 3rd (2 cents) not, a 1-cent one still
    does; Bob (2 cents): 2 cents fit, 1 more does not; her earlier run again; the member (an
    allocation of 1.5 cents): 1 cent fits, 2 do not; an unknown model; a free run."""
    alice = pb.Payer(user_id=s.alice, plan="pro")
    bob = pb.Payer(user_id=s.bob, plan="pro")
    member = pb.Payer(user_id=s.member, team_id=s.team, plan="team")
    plan: list[tuple[pb.Payer, list[pb.StageEstimate], str | None]] = [
        (alice, [cents(model, 1)], None),
        (bob, [cents(model, 2)], None),
        (member, [cents(model, 1)], None),
        (alice, [cents(model, 2)], None),
        (alice, [cents(model, 2)], None),  # 1 + 1 + 2 + 2 > 5: refused with its estimate
        (alice, [cents(model, 1)], s.earlier),  # reserved before: its reservation again
        (bob, [cents(model, 1)], None),  # refused: Bob's 2 cents are held
        (member, [cents(model, 2)], None),  # beyond the allocation, whichever goes first
        (alice, [pb.StageEstimate(stage="s", model="nope:none", input_tokens=5)], None),
        (alice, [], None),  # free
        (alice, [cents(model, 1)], None),  # the last cent alice has
    ]
    return [
        pb.ReserveRequest(run_id=run_id or new_id("run"), payer=payer, stages=stages)
        for payer, stages, run_id in plan
    ]


async def one_by_one(billing: Stub, reqs: list[pb.ReserveRequest]) -> list[Any]:
    answers: list[Any] = []
    for req in reqs:
        try:
            answers.append(await billing.Reserve(req))
        except grpc.RpcError as exc:
            answers.append(from_rpc_error(exc))
    return answers


def shape(s: Scenario, answer: Any) -> tuple[Any, ...]:
    """An answer with the pass's own ids replaced by their roles."""
    if isinstance(answer, pb.Reservation):
        roles = {s.alice: "alice", s.bob: "bob", s.team: "team", s.earlier: "earlier"}
        run = roles.get(answer.run_id, "run")
        return ("reservation", run, roles[answer.account_id], answer.amount_micros, answer.status)
    return ("error", answer.grpc_code, answer.code, answer.message)


async def balances(billing: Stub, s: Scenario) -> list[tuple[int, int]]:
    found = []
    for account in (s.alice, s.bob, s.team):
        b = await billing.GetBalance(pb.GetBalanceRequest(account_id=account))
        found.append((b.balance_micros, b.reserved_micros))
    return found


async def test_reserve_many_answers_as_one_by_one_would(
    billing: Stub, model: str, stack: Any
) -> None:
    batched, single = await scenario(billing, model), await scenario(billing, model)

    reply = await billing.ReserveMany(pb.ReserveManyRequest(requests=requests(batched, model)))
    answers = [
        o.reservation if o.HasField("reservation") else from_status_bytes(o.error)
        for o in reply.outcomes
    ]
    expected = await one_by_one(billing, requests(single, model))

    assert [shape(batched, a) for a in answers] == [shape(single, a) for a in expected]
    kinds = [shape(batched, a)[0] for a in answers]
    assert (
        kinds
        == ["reservation"] * 4 + ["error"] + ["reservation"] + ["error"] * 3 + ["reservation"] * 2
    )
    assert shape(batched, answers[4])[2:] == (
        "INSUFFICIENT_CREDITS",
        "Insufficient credits. Estimated cost: $0.02.",
    )
    assert shape(batched, answers[5])[1] == "earlier"
    assert await balances(billing, batched) == await balances(billing, single)
    assert await balances(billing, batched) == [
        (50_000, 50_000),
        (20_000, 20_000),
        (100_000, 10_000),
    ]

    # Alice's and Bob's accepted priced runs were reserved by one statement: one
    # transaction, so one timestamp on their ledger entries (one by one: one each).
    # (Alice's last cent was refused in turn, behind the 2 cents she lacked, and so was
    # reserved one by one.)
    accepted = [reply.outcomes[i].reservation.run_id for i in (0, 1, 3)]
    conn = await asyncpg.connect(stack.dsn, server_settings={"search_path": "billing"})
    try:
        stamps = await conn.fetchval(
            "SELECT count(DISTINCT created_at) FROM ledger"
            " WHERE kind = 'reserve' AND run_id = ANY($1::text[])",
            accepted,
        )
        once = await conn.fetchval(
            "SELECT count(*) FROM ledger WHERE kind = 'reserve' AND run_id = $1", batched.earlier
        )
    finally:
        await conn.close()
    assert (stamps, once) == (1, 1)
    assert (await billing.CheckLedger(pb.CheckLedgerRequest())).ok


async def open_run(billing: Stub, user: str, model: str, n: int) -> str:
    run_id = new_id("run")
    await billing.Reserve(
        pb.ReserveRequest(
            run_id=run_id, payer=pb.Payer(user_id=user, plan="pro"), stages=[cents(model, n)]
        )
    )
    return run_id


def used(model: str, input_tokens: int) -> list[Usage]:
    return [Usage("s", model, input_tokens, 0)]


async def test_capture_many_charges_each_run_once(
    billing: Stub, model: str, pool: asyncpg.Pool
) -> None:
    alice, bob = new_id("usr"), new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=alice, amount_micros=100_000))
    await billing.Grant(pb.GrantRequest(account_id=bob, amount_micros=30_000))
    a1, a2 = await open_run(billing, alice, model, 2), await open_run(billing, alice, model, 2)
    b1, b2 = await open_run(billing, bob, model, 1), await open_run(billing, bob, model, 1)
    # Bob has 1 cent available beyond his holds: b1 costing 3 is capped at 2, and then
    # b2 (1 held, costing 1) still gets its cent from its own reservation.
    runs = [
        (a1, used(model, 1000)),  # 1 of 2 cents: 1 released
        (b1, used(model, 3000)),
        (a2, used(model, 2000)),
        (b2, used(model, 1000)),
    ]
    billing_service = BillingService(pool)
    done = await billing_service.capture_many(runs)

    assert done == {
        a1: CaptureResult(a1, 10_000, 10_000, False),
        b1: CaptureResult(b1, 20_000, 0, False, 10_000),
        a2: CaptureResult(a2, 20_000, 0, False),
        b2: CaptureResult(b2, 10_000, 0, False),
    }
    after = [
        (b.balance_micros, b.reserved_micros)
        for b in await asyncio.gather(
            billing.GetBalance(pb.GetBalanceRequest(account_id=alice)),
            billing.GetBalance(pb.GetBalanceRequest(account_id=bob)),
        )
    ]
    assert after == [(70_000, 0), (0, 0)]

    # Redelivered (and once more inside the same batch): settled before, nothing charged.
    again = await billing_service.capture_many(runs + runs[:1])
    assert again == {
        a1: CaptureResult(a1, 10_000, 10_000, True),
        b1: CaptureResult(b1, 20_000, 0, True),
        a2: CaptureResult(a2, 20_000, 0, True),
        b2: CaptureResult(b2, 10_000, 0, True),
    }
    entries = await pool.fetch(
        "SELECT run_id, kind, amount_micros, note FROM ledger"
        " WHERE run_id = ANY($1::text[]) AND kind <> 'reserve' ORDER BY run_id, kind",
        [a1, a2, b1, b2],
    )
    assert sorted((r["run_id"], r["kind"], r["amount_micros"]) for r in entries) == sorted(
        [
            (a1, "capture", 10_000),
            (a1, "release", 10_000),
            (a2, "capture", 20_000),
            (b1, "capture", 20_000),
            (b2, "capture", 10_000),
        ]
    )
    assert [r["note"] for r in entries if r["run_id"] == b1] == [
        "capped at available credits: actual cost 30000 micros, 10000 micros not charged"
    ]
    assert await billing_service.check_ledger() == []


async def test_capture_many_leaves_what_it_cannot_batch_to_capture(
    billing: Stub, model: str, pool: asyncpg.Pool
) -> None:
    team, member = new_id("team"), new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=team, amount_micros=100_000))
    await billing.SetAllocation(
        pb.SetAllocationRequest(team_id=team, user_id=member, monthly_micros=50_000)
    )
    team_run = new_id("run")
    await billing.Reserve(
        pb.ReserveRequest(
            run_id=team_run,
            payer=pb.Payer(user_id=member, team_id=team, plan="team"),
            stages=[cents(model, 1)],
        )
    )
    done = await BillingService(pool).capture_many(
        [(team_run, used(model, 1000)), (new_id("run"), used(model, 1000))]
    )
    assert done == {}  # a team member's run and an unknown run: `capture` answers them


async def settled(js: JetStreamContext) -> bool:
    """Billing's consumer has nothing left to deliver nor waiting for an ack."""
    info = await js.consumer_info(BILLING_STREAM, "billing-capture")
    return not info.num_pending and not info.num_ack_pending


def terminal_event(run_id: str, model: str, input_tokens: int) -> bytes:
    breakdown = [
        {"stage": "s", "type": "llm", "model": model, "input_tokens": input_tokens,
         "output_tokens": 0, "cost_cents": 1, "duration_ms": 5}
    ]  # fmt: skip
    run = {"id": run_id, "status": "completed", "cost_cents": 1, "cost_breakdown": breakdown}
    event = RunEvent(
        id=new_id("evt"), type=RUN_COMPLETED, run_id=run_id, seq=9, created_at=iso(utcnow()),
        run=run,
    )  # fmt: skip
    return event.to_json()


async def test_a_redelivered_batch_of_events_charges_nothing_more(
    billing: Stub, model: str, js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    alice, bob = new_id("usr"), new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=alice, amount_micros=100_000))
    await billing.Grant(pb.GrantRequest(account_id=bob, amount_micros=100_000))
    runs = [await open_run(billing, user, model, 2) for user in (alice, bob) * 4]

    async def publish_all() -> None:
        await asyncio.gather(
            *(
                js.publish(billing_subject(r, RUN_COMPLETED), terminal_event(r, model, 1000))
                for r in runs
            )
        )

    async def captures() -> int:
        return int(
            await pool.fetchval(
                "SELECT count(*) FROM ledger WHERE kind = 'capture' AND run_id = ANY($1::text[])",
                runs,
            )
        )

    await publish_all()
    await publish_all()  # redelivered: the consumer sees every run twice
    deadline = asyncio.get_running_loop().time() + 30
    while await captures() < len(runs):
        assert asyncio.get_running_loop().time() < deadline, "runs were never captured"
        await asyncio.sleep(0.1)
    # Every event handled: nothing left unacked on billing's consumer.
    while not await settled(js):
        assert asyncio.get_running_loop().time() < deadline, "events were never acked"
        await asyncio.sleep(0.1)

    assert await captures() == len(runs)
    for user in (alice, bob):
        balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=user))
        assert (balance.balance_micros, balance.reserved_micros) == (60_000, 0)
    assert (await billing.CheckLedger(pb.CheckLedgerRequest())).ok
