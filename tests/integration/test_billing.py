"""Billing against the real stack over gRPC: reservations under concurrency, plans, team
allocations, release, prices and the ledger check."""

import asyncio
import subprocess
from typing import Any

import asyncpg
import grpc
import pytest

from tests.support.billing import priced_model
from tests.support.runs import create_user
from weft.billing.v1 import billing_pb2 as pb
from weft.billing.v1 import billing_pb2_grpc
from weftcore.errors import WeftError, from_rpc_error, from_status_bytes
from weftcore.ids import new_id


@pytest.fixture(scope="module")
async def model(billing: billing_pb2_grpc.BillingServiceStub) -> str:
    """A model only this module uses (1,000 input tokens cost one cent)."""
    return await priced_model(billing, "billing-test")


def one_cent_stage(model: str) -> pb.StageEstimate:
    return pb.StageEstimate(stage="summarize", model=model, input_tokens=1000)


async def call(coro: Any) -> Any:
    """Await a stub call; a failure comes back as the WeftError the service raised."""
    try:
        return await coro
    except grpc.RpcError as exc:
        return from_rpc_error(exc)


async def reserve(
    billing: billing_pb2_grpc.BillingServiceStub,
    stages: list[pb.StageEstimate],
    *,
    user_id: str,
    team_id: str = "",
    plan: str = "pro",
    run_id: str | None = None,
) -> Any:
    request = pb.ReserveRequest(
        run_id=run_id or new_id("run"),
        payer=pb.Payer(user_id=user_id, team_id=team_id, plan=plan),
        stages=stages,
    )
    return await call(billing.Reserve(request))


async def assert_ledger_sound(billing: billing_pb2_grpc.BillingServiceStub) -> None:
    check = await billing.CheckLedger(pb.CheckLedgerRequest())
    assert check.ok, list(check.mismatches)


async def test_100_concurrent_reservations_against_credits_for_37(
    billing: billing_pb2_grpc.BillingServiceStub, model: str, stack: Any
) -> None:
    user = new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=37 * 10_000))

    results = await asyncio.gather(
        *(reserve(billing, [one_cent_stage(model)], user_id=user) for _ in range(100))
    )

    ok = [r for r in results if isinstance(r, pb.Reservation)]
    errors = [r for r in results if isinstance(r, WeftError)]
    assert len(ok) == 37
    assert len(errors) == 63
    assert {(e.code, e.message) for e in errors} == {
        ("INSUFFICIENT_CREDITS", "Insufficient credits. Estimated cost: $0.01.")
    }
    assert all(r.status == "open" and r.amount_micros == 10_000 for r in ok)
    balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=user))
    assert (balance.balance_micros, balance.reserved_micros, balance.available_micros) == (
        370_000,
        370_000,
        0,
    )
    # Never negative at any point: the database refuses it, and nothing was refused there.
    conn = await asyncpg.connect(stack.dsn)
    try:
        low = await conn.fetchval(
            "SELECT min(balance_micros - reserved_micros) FROM billing.accounts"
        )
    finally:
        await conn.close()
    assert low >= 0
    await assert_ledger_sound(billing)


async def test_reserve_many_answers_each_request_in_order(
    billing: billing_pb2_grpc.BillingServiceStub, stack: Any, model: str
) -> None:
    # Free reservations share one statement; the others are reserved one by one; every
    # request gets its own outcome, errors included.
    user = new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=1_000_000))
    earlier = new_id("run")
    assert isinstance(await reserve(billing, [], user_id=user, run_id=earlier), pb.Reservation)
    payer = pb.Payer(user_id=user, plan="pro")
    fresh = [new_id("run") for _ in range(3)]
    requests = [
        pb.ReserveRequest(run_id=fresh[0], payer=payer),
        pb.ReserveRequest(run_id=earlier, payer=payer),  # reserved before: the same answer
        pb.ReserveRequest(run_id=new_id("run"), payer=pb.Payer(user_id=user, plan="free")),
        pb.ReserveRequest(run_id=fresh[1], payer=payer, stages=[one_cent_stage(model)]),
        pb.ReserveRequest(run_id=fresh[2], payer=payer),
    ]
    reply = await billing.ReserveMany(pb.ReserveManyRequest(requests=requests))
    outcomes = list(reply.outcomes)
    assert [o.reservation.run_id for o in outcomes] == [fresh[0], earlier, "", fresh[1], fresh[2]]
    refused = from_status_bytes(outcomes[2].error)
    assert refused.code == "PAID_PLAN_REQUIRED"
    assert outcomes[3].reservation.amount_micros > 0
    conn = await asyncpg.connect(stack.dsn, server_settings={"search_path": "billing"})
    try:
        entries = await conn.fetch(
            "SELECT run_id, count(*) AS n FROM ledger WHERE kind = 'reserve'"
            " AND run_id = ANY($1::text[]) GROUP BY run_id",
            [*fresh, earlier],
        )
    finally:
        await conn.close()
    assert sorted(r["n"] for r in entries) == [1, 1, 1, 1]  # once each, the earlier too
    await assert_ledger_sound(billing)


async def test_reserve_is_idempotent_on_run_id(
    billing: billing_pb2_grpc.BillingServiceStub, model: str
) -> None:
    user = new_id("usr")
    run_id = new_id("run")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=50_000))

    first, second = await asyncio.gather(
        reserve(billing, [one_cent_stage(model)], user_id=user, run_id=run_id),
        reserve(billing, [one_cent_stage(model)], user_id=user, run_id=run_id),
    )

    assert first == second
    balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=user))
    assert balance.reserved_micros == 10_000
    ledger = await billing.ListLedger(pb.ListLedgerRequest(account_id=user))
    assert [e.kind for e in ledger.entries] == ["reserve", "grant"]


async def test_free_plan_needs_a_paid_plan(
    billing: billing_pb2_grpc.BillingServiceStub, model: str
) -> None:
    user = new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=1_000_000))
    err = await reserve(billing, [one_cent_stage(model)], user_id=user, plan="free")
    assert isinstance(err, WeftError)
    assert err.grpc_code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.code == "PAID_PLAN_REQUIRED"


async def test_insufficient_credits_names_the_estimate_rounded_up(
    billing: billing_pb2_grpc.BillingServiceStub, model: str
) -> None:
    user = new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=50_000))
    # One stage: 1,234 in (12,340 micros) + 500 out (10,000 micros) -> 22,340 -> 3 cents.
    stage = pb.StageEstimate(stage="a", model=model, input_tokens=1234, max_output_tokens=500)

    err = await reserve(billing, [stage, stage], user_id=user)
    assert isinstance(err, WeftError)
    assert err.code == "INSUFFICIENT_CREDITS"
    assert err.message == "Insufficient credits. Estimated cost: $0.06."

    ok = await reserve(billing, [stage], user_id=user)
    assert isinstance(ok, pb.Reservation)
    assert ok.amount_micros == 30_000
    # Available is now 20,000: the open reservation counts against the balance.
    err = await reserve(billing, [stage], user_id=user)
    assert isinstance(err, WeftError)
    assert err.message == "Insufficient credits. Estimated cost: $0.03."


async def test_unknown_model_is_an_invalid_param(
    billing: billing_pb2_grpc.BillingServiceStub,
) -> None:
    user = new_id("usr")
    stage = pb.StageEstimate(stage="s", model="nope:missing-model", input_tokens=10)
    err = await reserve(billing, [stage], user_id=user)
    assert isinstance(err, WeftError)
    assert err.grpc_code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.code == "INVALID_PARAM"
    assert "nope:missing-model" in err.message


async def test_team_member_without_allocation_is_refused(
    billing: billing_pb2_grpc.BillingServiceStub, model: str
) -> None:
    team, member = new_id("team"), new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=team, amount_micros=1_000_000))
    err = await reserve(billing, [one_cent_stage(model)], user_id=member, team_id=team, plan="team")
    assert isinstance(err, WeftError)
    assert err.grpc_code == grpc.StatusCode.PERMISSION_DENIED
    assert err.code == "NO_ALLOCATION"


async def test_team_member_spends_team_credits_within_the_allocation(
    billing: billing_pb2_grpc.BillingServiceStub, model: str
) -> None:
    team, member, other = new_id("team"), new_id("usr"), new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=team, amount_micros=1_000_000))
    await billing.SetAllocation(
        pb.SetAllocationRequest(team_id=team, user_id=member, monthly_micros=25_000)
    )
    await billing.SetAllocation(
        pb.SetAllocationRequest(team_id=team, user_id=other, monthly_micros=10_000)
    )

    results = await asyncio.gather(
        *(
            reserve(billing, [one_cent_stage(model)], user_id=member, team_id=team, plan="team")
            for _ in range(5)
        )
    )
    ok = [r for r in results if isinstance(r, pb.Reservation)]
    assert len(ok) == 2  # 2 cents fit in 2.5 cents; the third would exceed it
    assert all(r.account_id == team for r in ok)
    refused = [r for r in results if isinstance(r, WeftError)]
    assert {r.code for r in refused} == {"INSUFFICIENT_CREDITS"}

    # The allocation is per member: another member still has theirs.
    other_ok = await reserve(
        billing, [one_cent_stage(model)], user_id=other, team_id=team, plan="team"
    )
    assert isinstance(other_ok, pb.Reservation)
    # Team credits moved, not the member's own account.
    team_balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=team))
    assert team_balance.reserved_micros == 30_000
    own = await billing.GetBalance(pb.GetBalanceRequest(account_id=member))
    assert own.reserved_micros == 0

    # Capturing less than reserved gives the rest of the allocation back.
    done = await billing.Capture(
        pb.CaptureRequest(
            run_id=ok[0].run_id,
            stages=[pb.StageUsage(stage="summarize", model=model, input_tokens=0)],
        )
    )
    assert (done.captured_micros, done.released_micros) == (0, 10_000)
    again = await reserve(
        billing, [one_cent_stage(model)], user_id=member, team_id=team, plan="team"
    )
    assert isinstance(again, pb.Reservation)
    allocation = await billing.SetAllocation(
        pb.SetAllocationRequest(team_id=team, user_id=member, monthly_micros=25_000)
    )
    assert allocation.spent_this_month_micros == 20_000  # two open reservations
    await assert_ledger_sound(billing)


async def test_release_returns_the_hold_once(
    billing: billing_pb2_grpc.BillingServiceStub, model: str
) -> None:
    user = new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=10_000))
    held = await reserve(billing, [one_cent_stage(model)], user_id=user)
    assert isinstance(held, pb.Reservation)

    released = await asyncio.gather(
        *(billing.Release(pb.ReleaseRequest(run_id=held.run_id)) for _ in range(3))
    )

    assert {r.status for r in released} == {"released"}
    balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=user))
    assert (balance.balance_micros, balance.available_micros) == (10_000, 10_000)
    ledger = await billing.ListLedger(pb.ListLedgerRequest(account_id=user))
    assert sorted(e.kind for e in ledger.entries) == ["grant", "release", "reserve"]
    # A released run cannot be charged afterwards.
    late = await billing.Capture(
        pb.CaptureRequest(
            run_id=held.run_id,
            stages=[pb.StageUsage(stage="summarize", model=model, input_tokens=1000)],
        )
    )
    assert late.already_captured and late.captured_micros == 0


async def test_release_before_reserve_blocks_a_late_reservation(
    billing: billing_pb2_grpc.BillingServiceStub, model: str
) -> None:
    user = new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=10_000))
    run_id = new_id("run")
    gone = await billing.Release(pb.ReleaseRequest(run_id=run_id))
    assert gone.status == "released"
    late = await reserve(billing, [one_cent_stage(model)], user_id=user, run_id=run_id)
    assert late.status == "released"
    balance = await billing.GetBalance(pb.GetBalanceRequest(account_id=user))
    assert balance.reserved_micros == 0


async def test_price_usage_prices_each_stage_in_whole_cents(
    billing: billing_pb2_grpc.BillingServiceStub, model: str
) -> None:
    reply = await billing.PriceUsage(
        pb.PriceUsageRequest(
            stages=[
                pb.StageUsage(stage="a", model=model, input_tokens=1000, output_tokens=0),
                pb.StageUsage(stage="b", model=model, input_tokens=1, output_tokens=1),
                pb.StageUsage(stage="render", model="", input_tokens=0, output_tokens=0),
            ]
        )
    )
    assert list(reply.cost_micros) == [10_000, 10_000, 0]


async def test_ledger_check_detects_a_tampered_balance(
    billing: billing_pb2_grpc.BillingServiceStub, stack: Any
) -> None:
    user = new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=5_000))
    conn = await asyncpg.connect(stack.dsn)
    try:
        await conn.execute(
            "UPDATE billing.accounts SET balance_micros = balance_micros + 1 WHERE account_id = $1",
            user,
        )
        check = await billing.CheckLedger(pb.CheckLedgerRequest())
        assert not check.ok
        assert [
            (m.account_id, m.cached_balance_micros, m.ledger_balance_micros)
            for m in check.mismatches
        ] == [(user, 5_001, 5_000)]
    finally:
        await conn.execute(
            "UPDATE billing.accounts SET balance_micros = 5000 WHERE account_id = $1", user
        )
        await conn.close()
    await assert_ledger_sound(billing)


async def test_admin_cli_grants_and_shows_the_ledger(stack: Any) -> None:
    user = create_user(stack).user_id  # credits go only to accounts that exist
    granted = stack.admin("credits", "grant", "--account", user, "--amount-usd", "0.10")
    assert granted.returncode == 0, granted.stderr
    shown = stack.admin("credits", "balance", "--account", user)
    assert '"balance_micros": 100000' in shown.stdout
    ledger = stack.admin("credits", "ledger", "--account", user)
    assert '"kind": "grant"' in ledger.stdout
    try:  # sub-micro amounts are refused before any call
        bad = stack.admin("credits", "grant", "--account", user, "--amount-usd", "0.0000001")
        refused = bad.returncode != 0
    except subprocess.CalledProcessError:
        refused = True
    assert refused
    check = stack.admin("credits", "check")
    assert check.returncode == 0, check.stdout


async def test_ledger_entries_are_immutable(
    billing: billing_pb2_grpc.BillingServiceStub, stack: Any
) -> None:
    user = new_id("usr")
    await billing.Grant(pb.GrantRequest(account_id=user, amount_micros=5_000))
    conn = await asyncpg.connect(stack.dsn)
    try:
        for sql in (
            "UPDATE billing.ledger SET amount_micros = 1 WHERE account_id = $1",
            "DELETE FROM billing.ledger WHERE account_id = $1",
        ):
            with pytest.raises(asyncpg.RaiseError, match="immutable"):
                await conn.execute(sql, user)
    finally:
        await conn.close()
    ledger = await billing.ListLedger(pb.ListLedgerRequest(account_id=user))
    assert [(e.kind, e.amount_micros) for e in ledger.entries] == [("grant", 5_000)]
