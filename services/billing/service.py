"""Billing domain: reserve, capture, release, grants, prices, allocations.

Every operation that moves money is one Postgres transaction that appends immutable
ledger entries and updates the cached balance row it locked, so concurrent callers
serialise on the account row and can never overspend.
"""

import logging
from dataclasses import dataclass

import asyncpg

from services.billing import repository as repo
from services.billing.capping import Charge, OwnRun, charge, charge_in_turn
from services.billing.money import format_usd_ceil
from services.billing.pricing import Price, UnknownModel, Usage, price_stages
from weftcore.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from weftcore.ids import has_prefix
from weftcore.plans import PAID_PLANS, require_paid_plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Payer:
    user_id: str
    team_id: str
    plan: str

    @property
    def account_id(self) -> str:
        """Team credits when the payer belongs to a team, else the user's own."""
        return self.team_id or self.user_id


@dataclass(frozen=True)
class CaptureResult:
    run_id: str
    captured_micros: int
    released_micros: int
    already_captured: bool
    shortfall_micros: int = 0  # actual cost not charged (capping.py)


class _LostRace(Exception):
    """Another transaction reserved the same run_id first; roll back and read theirs."""


def insufficient(estimate_micros: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"Insufficient credits. Estimated cost: {format_usd_ceil(estimate_micros)}.",
        code="INSUFFICIENT_CREDITS",
    )


def over_cap(estimate_micros: int, cap_micros: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"This run's estimated cost, {format_usd_ceil(estimate_micros)}, is over the"
        f" endpoint's cap of {format_usd_ceil(cap_micros)} per run.",
        code="COST_CAP_EXCEEDED",
    )


def _check_account_id(account_id: str) -> None:
    if not (has_prefix(account_id, "usr") or has_prefix(account_id, "team")):
        raise InvalidArgument(
            "account_id must be a user (usr_...) or team (team_...) id.", param="account_id"
        )


class BillingService:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- pricing ------------------------------------------------------------------

    async def _prices_for(self, conn: asyncpg.Connection, usages: list[Usage]) -> dict[str, Price]:
        models = sorted({u.model for u in usages if u.model})
        if not models:  # template/http-only runs: no query at all
            return {}
        return await repo.get_prices(conn, models)

    async def price_usage(self, usages: list[Usage]) -> list[int]:
        """Cost in micros of each stage (pricing.py's rounding), in order."""
        async with self.pool.acquire() as conn:
            prices = await self._prices_for(conn, usages)
        return _price(usages, prices)

    # --- reserve / capture / release ----------------------------------------------

    async def reserve(
        self, run_id: str, payer: Payer, stages: list[Usage], max_amount: int = 0
    ) -> repo.ReservationRow:
        """Estimate and hold credits for a run; idempotent on run_id. `max_amount` > 0:
        an estimate over it is refused (COST_CAP_EXCEEDED) and nothing is held."""
        if not has_prefix(run_id, "run"):
            raise InvalidArgument("run_id must be a run id (run_...).", param="run_id")
        if not payer.user_id:
            raise InvalidArgument("payer.user_id is required.", param="payer.user_id")
        async with self.pool.acquire() as conn:
            if payer.plan not in PAID_PLANS or payer.team_id:
                existing = await repo.get_reservation(conn, run_id)
                if existing is not None:
                    return existing
            require_paid_plan(payer.plan)
            estimate = _estimate(stages, await self._prices_for(conn, stages))
            if max_amount and estimate > max_amount:
                raise over_cap(estimate, max_amount)
            if not payer.team_id:
                # One statement, its own transaction: the account row is locked only
                # inside the server (and not at all for a free estimate).
                res = await repo.reserve_own(conn, run_id, payer.user_id, estimate)
                if res is not None:
                    return res
                found = await repo.get_reservation(conn, run_id)  # reserved before
                if found is not None:
                    return found
                raise insufficient(estimate)
            try:
                async with conn.transaction():
                    return await self._reserve_tx(conn, run_id, payer, estimate)
            except _LostRace:
                found = await repo.get_reservation(conn, run_id)
                assert found is not None
                return found

    @staticmethod
    def is_own(run_id: str, payer: Payer) -> bool:
        """A reservation `reserve_own_many` can make: a paying user's own credits (a team
        member's needs their allocation checked)."""
        return (
            has_prefix(run_id, "run")
            and bool(payer.user_id)
            and payer.plan in PAID_PLANS
            and not payer.team_id
        )

    async def reserve_own_many(
        self, runs: list[tuple[str, Payer, list[Usage]]]
    ) -> list[repo.ReservationRow | None]:
        """`reserve` for many runs that are all `is_own`, in a statement for the free
        ones and one for the priced ones. None for each run not reserved now (refused, an
        unknown model, reserved before, a run id repeated): `reserve` answers those."""
        async with self.pool.acquire() as conn:
            prices = await self._prices_for(conn, [u for _, _, stages in runs for u in stages])
            estimates: dict[str, int] = {}
            for run_id, _, stages in runs:
                if run_id in estimates:
                    continue
                try:
                    estimates[run_id] = _estimate(stages, prices)
                except InvalidArgument:
                    estimates[run_id] = -1  # its own error comes from `reserve`
            firsts: dict[str, Payer] = {}  # in request order: the order runs are accepted
            for run_id, payer, _ in runs:
                firsts.setdefault(run_id, payer)
            free = [(r, p.user_id) for r, p in firsts.items() if estimates[r] == 0]
            priced = [(r, p.user_id, estimates[r]) for r, p in firsts.items() if estimates[r] > 0]
            made = await repo.reserve_free_many(conn, free) if free else set()
            if priced:
                made |= await repo.reserve_priced_many(conn, priced)
        rows: list[repo.ReservationRow | None] = []
        for run_id, payer, _ in runs:
            if run_id in made:
                made.discard(run_id)  # a repeat of the run id gets `reserve`'s answer
                user = payer.user_id
                amount = estimates[run_id]
                rows.append(repo.ReservationRow(run_id, user, user, "", amount, "open", 0, 0))
            else:
                rows.append(None)
        return rows

    async def _reserve_tx(
        self, conn: asyncpg.Connection, run_id: str, payer: Payer, estimate: int
    ) -> repo.ReservationRow:
        account_id = payer.account_id
        if payer.team_id:
            # Lock order everywhere: allocation row, then account row.
            monthly = await repo.lock_allocation(conn, payer.team_id, payer.user_id)
            if monthly is None:
                raise PermissionDenied(
                    "You have no credit allocation on this team. Ask a team admin for one.",
                    code="NO_ALLOCATION",
                )
            spent = await repo.member_spent_this_month(conn, payer.team_id, payer.user_id)
            if spent + estimate > monthly:
                raise insufficient(estimate)
        account = await repo.lock_account(conn, account_id)
        if account.available_micros < estimate:
            raise insufficient(estimate)
        res = repo.ReservationRow(
            run_id, account_id, payer.user_id, payer.team_id, estimate, "open", 0, 0
        )
        if not await repo.insert_reservation(conn, res):
            raise _LostRace
        await repo.add_to_account(conn, account_id, 0, estimate)
        await repo.append_ledger(
            conn, account_id, "reserve", estimate, run_id=run_id, user_id=payer.user_id
        )
        return res

    async def capture(self, run_id: str, stages: list[Usage]) -> CaptureResult:
        """Charge a finished run's actual cost and release the rest, once per run_id.

        The charge is the actual cost, clamped (capping.py): never more than the
        reservation plus what is still available (a balance never goes negative), and for
        a team member never more than the monthly allocation still allows. A shortfall is
        noted on the capture's ledger entry. A run whose reservation expired (its
        run.created event came after the TTL) is still charged, from what is available.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            res = await repo.get_reservation(conn, run_id, lock=True)
            if res is None:
                raise NotFound(f"No reservation for run {run_id}.")
            late = res.status == "released" and res.expired
            if res.status != "open" and not late:
                return CaptureResult(run_id, res.captured_micros, res.released_micros, True)
            cost = sum(_price(stages, await self._prices_for(conn, stages)))
            held = res.amount_micros if res.status == "open" else 0
            if cost or held:
                # Within its reservation a run stays within the allocation it was admitted
                # under; only more than that is checked. Lock order everywhere: allocation
                # row, then account row.
                over = res.team_id and cost > held
                allowance = await self._allowance(conn, res, held) if over else None
                account = await repo.lock_account(conn, res.account_id)
                done = charge(cost, held, account.available_micros, allowance)
                await repo.add_to_account(conn, res.account_id, -done.charged, -held)
            else:  # nothing to charge or give back: the balance row stays untouched
                done = Charge(0, 0, 0, "")
            await repo.close_reservation(
                conn, run_id, "captured", done.charged, res.released_micros + done.released
            )
            if done.shortfall:
                _log_capped(res, cost, done)
            await repo.append_ledger(
                conn,
                res.account_id,
                "capture",
                done.charged,
                run_id=run_id,
                user_id=res.user_id,
                note=done.note(cost),
            )
            if done.released:
                await repo.append_ledger(
                    conn,
                    res.account_id,
                    "release",
                    done.released,
                    run_id=run_id,
                    user_id=res.user_id,
                )
            return CaptureResult(run_id, done.charged, done.released, False, done.shortfall)

    async def capture_many(self, runs: list[tuple[str, list[Usage]]]) -> dict[str, CaptureResult]:
        """`capture` for many runs of users' own accounts in ONE transaction: each run's
        charge is `capture`'s (capping.charge, in turn), each account is locked and
        updated once. Answers the runs settled now or before (already_captured); the rest
        (no reservation, a team member's, expired then late, not priceable) need
        `capture`."""
        usages: dict[str, list[Usage]] = {}  # a repeated run id is captured once
        for run_id, stages in runs:
            usages.setdefault(run_id, stages)
        async with self.pool.acquire() as conn, conn.transaction():
            locked = {r.run_id: r for r in await repo.lock_own_reservations(conn, list(usages))}
            # In the order the runs came, as one capture after another would see them.
            found = [locked[run_id] for run_id in usages if run_id in locked]
            results: dict[str, CaptureResult] = {}
            open_: list[tuple[repo.ReservationRow, int]] = []
            prices = await self._prices_for(
                conn, [u for res in found if res.status == "open" for u in usages[res.run_id]]
            )
            for res in found:
                if res.status == "open":
                    try:
                        open_.append((res, sum(_price(usages[res.run_id], prices))))
                    except InvalidArgument:
                        continue  # `capture` refuses it, loudly
                elif not (res.status == "released" and res.expired):
                    results[res.run_id] = CaptureResult(
                        res.run_id, res.captured_micros, res.released_micros, True
                    )
            if not open_:
                return results
            touched = [res.account_id for res, cost in open_ if cost or res.amount_micros]
            accounts = await repo.lock_accounts(conn, touched) if touched else {}
            charges = charge_in_turn(
                [OwnRun(res.account_id, cost, res.amount_micros) for res, cost in open_],
                {a.account_id: a.available_micros for a in accounts.values()},
            )
            deltas: dict[str, tuple[int, int]] = {}
            closings = []
            for (res, cost), done in zip(open_, charges, strict=True):
                if cost or res.amount_micros:
                    balance, reserved = deltas.get(res.account_id, (0, 0))
                    deltas[res.account_id] = (balance - done.charged, reserved - res.amount_micros)
                closings.append(repo.Closing(res, done.charged, done.released, done.note(cost)))
                if done.shortfall:
                    _log_capped(res, cost, done)
                results[res.run_id] = CaptureResult(
                    res.run_id, done.charged, done.released, False, done.shortfall
                )
            if deltas:
                await repo.add_to_accounts(conn, deltas)
            await repo.capture_reservations(conn, closings)
            return results

    async def _allowance(
        self, conn: asyncpg.Connection, res: repo.ReservationRow, held: int
    ) -> int:
        """What the member's allocation still allows this run to be charged: the
        allocation minus what they spent this month and hold elsewhere (this run's own
        reservation, `held`, is counted as spent there, so it is added back). A member
        whose allocation is gone may spend nothing more."""
        monthly = await repo.lock_allocation(conn, res.team_id, res.user_id)
        spent = await repo.member_spent_this_month(conn, res.team_id, res.user_id)
        return (monthly or 0) - (spent - held)

    async def release(self, run_id: str, *, expire: bool = False) -> repo.ReservationRow:
        """Give back a reservation without charging (a run that never committed).

        For an unknown run_id a released tombstone is recorded, so a Reserve that
        arrives late (after the caller gave up) cannot hold credits forever. With
        `expire`, only a still unconfirmed reservation is released (the sweeper).
        """
        async with self.pool.acquire() as conn, conn.transaction():
            res = await repo.get_reservation(conn, run_id, lock=True)
            if res is None:
                tombstone = repo.ReservationRow(run_id, "", "", "", 0, "released", 0, 0)
                if await repo.insert_reservation(conn, tombstone):
                    return tombstone
                res = await repo.get_reservation(conn, run_id, lock=True)
                assert res is not None
            if res.status != "open":
                return res
            if expire and not await repo.is_unconfirmed(conn, run_id):
                return res
            await repo.lock_account(conn, res.account_id)
            await repo.add_to_account(conn, res.account_id, 0, -res.amount_micros)
            closed = await repo.close_reservation(
                conn, run_id, "released", 0, res.amount_micros, expired=expire
            )
            await repo.append_ledger(
                conn,
                res.account_id,
                "release",
                res.amount_micros,
                run_id=run_id,
                user_id=res.user_id,
                note="expired: the run never committed" if expire else "",
            )
            return closed

    async def confirm(self, run_id: str) -> bool:
        """The run committed (run.created): its reservation must not expire."""
        async with self.pool.acquire() as conn:
            return await repo.confirm_reservation(conn, run_id)

    async def confirm_many(self, run_ids: list[str]) -> None:
        """confirm for a batch of run.created events, in one statement."""
        async with self.pool.acquire() as conn:
            await repo.confirm_reservations(conn, run_ids)

    async def capture_free(self, run_ids: list[str]) -> repo.FreeCapture:
        """capture(run_id, usages that cost nothing) for many runs at once, for those that
        also held nothing; answers the runs it captured and those that never reserved
        (only runs created before the runs service recorded holds_reservation still
        reach billing). Any other (already captured, or held credits to give back)
        needs `capture`."""
        async with self.pool.acquire() as conn:  # one statement: its own transaction
            return await repo.capture_free(conn, run_ids)

    async def expire_stale(self, older_than_seconds: float, limit: int = 100) -> int:
        """Releases unconfirmed reservations older than the TTL; returns how many."""
        async with self.pool.acquire() as conn:
            run_ids = await repo.stale_unconfirmed(conn, older_than_seconds, limit)
        count = 0
        for run_id in run_ids:
            res = await self.release(run_id, expire=True)
            if res.status == "released" and res.expired:
                count += 1
                log.warning("reservation expired unconfirmed", extra={"run_id": run_id})
        return count

    # --- admin ------------------------------------------------------------------------

    async def grant(self, account_id: str, amount_micros: int, note: str) -> repo.AccountRow:
        _check_account_id(account_id)
        if amount_micros <= 0:
            raise InvalidArgument("amount_micros must be positive.", param="amount_micros")
        async with self.pool.acquire() as conn, conn.transaction():
            await repo.lock_account(conn, account_id)
            account = await repo.add_to_account(conn, account_id, amount_micros, 0)
            await repo.append_ledger(conn, account_id, "grant", amount_micros, note=note)
            return account

    async def balance(self, account_id: str) -> repo.AccountRow:
        _check_account_id(account_id)
        async with self.pool.acquire() as conn:
            return await repo.get_account(conn, account_id)

    async def ledger(self, account_id: str, limit: int) -> list[repo.LedgerRow]:
        _check_account_id(account_id)
        limit = 50 if limit <= 0 else min(limit, 1000)
        async with self.pool.acquire() as conn:
            return await repo.list_ledger(conn, account_id, limit)

    async def check_ledger(self) -> list[repo.Mismatch]:
        """Accounts whose cached balances disagree with their ledger (empty when sound)."""
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            return await repo.ledger_mismatches(conn)

    async def set_price(self, price: Price) -> Price:
        if not price.model or ":" not in price.model:
            raise InvalidArgument("model must look like <provider>:<model>.", param="model")
        if price.input_micros_per_mtok < 0 or price.output_micros_per_mtok < 0:
            raise InvalidArgument("prices cannot be negative.", param="price")
        async with self.pool.acquire() as conn:
            await repo.upsert_price(conn, price)
        return price

    async def list_prices(self) -> list[Price]:
        async with self.pool.acquire() as conn:
            return list((await repo.get_prices(conn)).values())

    async def seed_prices(self, prices: list[Price]) -> None:
        async with self.pool.acquire() as conn:
            await repo.seed_prices(conn, prices)

    async def set_allocation(self, team_id: str, user_id: str, monthly_micros: int) -> int:
        """Sets the member's monthly allocation; returns what they spent this month."""
        if not has_prefix(team_id, "team"):
            raise InvalidArgument("team_id must be a team id (team_...).", param="team_id")
        if not has_prefix(user_id, "usr"):
            raise InvalidArgument("user_id must be a user id (usr_...).", param="user_id")
        if monthly_micros < 0:
            raise InvalidArgument("monthly_micros cannot be negative.", param="monthly_micros")
        async with self.pool.acquire() as conn, conn.transaction():
            await repo.upsert_allocation(conn, team_id, user_id, monthly_micros)
            return await repo.member_spent_this_month(conn, team_id, user_id)


def _log_capped(res: repo.ReservationRow, cost: int, done: Charge) -> None:
    log.warning(
        "capture capped",
        extra={
            "run_id": res.run_id,
            "account_id": res.account_id,
            "user_id": res.user_id,
            "actual_micros": cost,
            "captured_micros": done.charged,
            "shortfall_micros": done.shortfall,
            "capped_by": done.capped_by,
        },
    )


def _estimate(stages: list[Usage], prices: dict[str, Price]) -> int:
    """What a run of `stages` reserves; InvalidArgument for a model without a price."""
    for usage in stages:
        # A stage without a model and without tokens (template, http) is free.
        if usage.model not in prices and (usage.model or usage.billable):
            raise InvalidArgument(f"Unknown model: {usage.model!r} has no price.", param="model")
    return sum(_price(stages, prices))


def _price(usages: list[Usage], prices: dict[str, Price]) -> list[int]:
    try:
        return price_stages(usages, prices)
    except UnknownModel as exc:
        raise InvalidArgument(
            f"Unknown model: {exc.model!r} has no price.", param="model"
        ) from None
    except ValueError as exc:
        raise InvalidArgument(str(exc), param="stages") from None
