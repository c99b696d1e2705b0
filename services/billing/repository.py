"""SQL of the billing schema. Every function takes a connection already inside the
caller's transaction; the domain (service.py) decides the transaction boundaries."""

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.billing.pricing import Price
from weftcore.ids import new_id


@dataclass(frozen=True)
class AccountRow:
    account_id: str
    balance_micros: int
    reserved_micros: int

    @property
    def available_micros(self) -> int:
        return self.balance_micros - self.reserved_micros


@dataclass(frozen=True)
class ReservationRow:
    run_id: str
    account_id: str
    user_id: str
    team_id: str
    amount_micros: int
    status: str
    captured_micros: int
    released_micros: int
    expired: bool = False


@dataclass(frozen=True)
class LedgerRow:
    id: str
    account_id: str
    kind: str
    amount_micros: int
    run_id: str | None
    user_id: str
    note: str
    created_at: datetime


@dataclass(frozen=True)
class Mismatch:
    """An account whose cached balance differs from the sums of its ledger entries."""

    account_id: str
    cached_balance: int
    ledger_balance: int
    cached_reserved: int
    ledger_reserved: int


_RES_COLS = (
    "run_id, account_id, user_id, team_id, amount_micros, status, captured_micros,"
    " released_micros, expired"
)


def _reservation(row: asyncpg.Record | None) -> ReservationRow | None:
    return None if row is None else ReservationRow(**dict(row))


# --- prices -------------------------------------------------------------------------


async def seed_prices(conn: asyncpg.Connection, prices: list[Price]) -> None:
    await conn.executemany(
        "INSERT INTO prices (model, input_micros_per_mtok, output_micros_per_mtok)"
        " VALUES ($1, $2, $3) ON CONFLICT (model) DO NOTHING",
        [(p.model, p.input_micros_per_mtok, p.output_micros_per_mtok) for p in prices],
    )


async def upsert_price(conn: asyncpg.Connection, price: Price) -> None:
    await conn.execute(
        "INSERT INTO prices (model, input_micros_per_mtok, output_micros_per_mtok)"
        " VALUES ($1, $2, $3) ON CONFLICT (model) DO UPDATE SET"
        " input_micros_per_mtok = EXCLUDED.input_micros_per_mtok,"
        " output_micros_per_mtok = EXCLUDED.output_micros_per_mtok, updated_at = now()",
        price.model,
        price.input_micros_per_mtok,
        price.output_micros_per_mtok,
    )


async def get_prices(conn: asyncpg.Connection, models: list[str] | None = None) -> dict[str, Price]:
    if models is None:
        rows = await conn.fetch("SELECT * FROM prices ORDER BY model")
    else:
        rows = await conn.fetch("SELECT * FROM prices WHERE model = ANY($1::text[])", models)
    return {
        r["model"]: Price(r["model"], r["input_micros_per_mtok"], r["output_micros_per_mtok"])
        for r in rows
    }


# --- accounts -----------------------------------------------------------------------


async def get_account(conn: asyncpg.Connection, account_id: str) -> AccountRow:
    row = await conn.fetchrow(
        "SELECT account_id, balance_micros, reserved_micros FROM accounts WHERE account_id = $1",
        account_id,
    )
    return AccountRow(account_id, 0, 0) if row is None else AccountRow(**dict(row))


async def lock_account(conn: asyncpg.Connection, account_id: str) -> AccountRow:
    """The account's balance row, locked until the transaction ends (created if new)."""
    await conn.execute(
        "INSERT INTO accounts (account_id) VALUES ($1) ON CONFLICT DO NOTHING", account_id
    )
    row = await conn.fetchrow(
        "SELECT account_id, balance_micros, reserved_micros FROM accounts"
        " WHERE account_id = $1 FOR UPDATE",
        account_id,
    )
    assert row is not None
    return AccountRow(**dict(row))


async def add_to_account(
    conn: asyncpg.Connection, account_id: str, balance_delta: int, reserved_delta: int
) -> AccountRow:
    row = await conn.fetchrow(
        "UPDATE accounts SET balance_micros = balance_micros + $2,"
        " reserved_micros = reserved_micros + $3, updated_at = now()"
        " WHERE account_id = $1 RETURNING account_id, balance_micros, reserved_micros",
        account_id,
        balance_delta,
        reserved_delta,
    )
    assert row is not None
    return AccountRow(**dict(row))


# --- ledger -------------------------------------------------------------------------


async def append_ledger(
    conn: asyncpg.Connection,
    account_id: str,
    kind: str,
    amount_micros: int,
    *,
    run_id: str | None = None,
    user_id: str = "",
    note: str = "",
) -> str:
    entry_id = new_id("led")
    await conn.execute(
        "INSERT INTO ledger (id, account_id, kind, amount_micros, run_id, user_id, note)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        entry_id,
        account_id,
        kind,
        amount_micros,
        run_id,
        user_id,
        note,
    )
    return entry_id


async def list_ledger(conn: asyncpg.Connection, account_id: str, limit: int) -> list[LedgerRow]:
    rows = await conn.fetch(
        "SELECT id, account_id, kind, amount_micros, run_id, user_id, note, created_at"
        " FROM ledger WHERE account_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        account_id,
        limit,
    )
    return [LedgerRow(**dict(r)) for r in rows]


async def ledger_mismatches(conn: asyncpg.Connection) -> list[Mismatch]:
    """Accounts whose cached balance/reserved differ from what the ledger says.

    balance = grants - captures. reserved = reserves - releases - the part of each
    captured run's reservation that its capture consumed (its reserve minus its release:
    a capture may exceed the reservation, and a run whose expired reservation was
    released before its capture consumed none of it).
    """
    rows = await conn.fetch(
        """
        WITH per_kind AS (
            SELECT account_id,
                   COALESCE(SUM(amount_micros) FILTER (WHERE kind = 'grant'), 0) AS grants,
                   COALESCE(SUM(amount_micros) FILTER (WHERE kind = 'capture'), 0) AS captures,
                   COALESCE(SUM(amount_micros) FILTER (WHERE kind = 'reserve'), 0) AS reserves,
                   COALESCE(SUM(amount_micros) FILTER (WHERE kind = 'release'), 0) AS releases
            FROM ledger GROUP BY account_id
        ), from_reserve AS (
            SELECT c.account_id,
                   SUM(r.amount_micros - COALESCE(rel.amount_micros, 0)) AS amount
            FROM ledger c
            JOIN ledger r ON r.run_id = c.run_id AND r.kind = 'reserve'
            LEFT JOIN ledger rel ON rel.run_id = c.run_id AND rel.kind = 'release'
            WHERE c.kind = 'capture' GROUP BY c.account_id
        ), derived AS (
            SELECT p.account_id, p.grants - p.captures AS balance,
                   p.reserves - p.releases - COALESCE(f.amount, 0) AS reserved
            FROM per_kind p LEFT JOIN from_reserve f USING (account_id)
        )
        SELECT COALESCE(a.account_id, d.account_id) AS account_id,
               COALESCE(a.balance_micros, 0)::bigint AS cached_balance,
               COALESCE(d.balance, 0)::bigint AS ledger_balance,
               COALESCE(a.reserved_micros, 0)::bigint AS cached_reserved,
               COALESCE(d.reserved, 0)::bigint AS ledger_reserved
        FROM accounts a FULL JOIN derived d ON d.account_id = a.account_id
        WHERE COALESCE(a.balance_micros, 0) <> COALESCE(d.balance, 0)
           OR COALESCE(a.reserved_micros, 0) <> COALESCE(d.reserved, 0)
        ORDER BY 1
        """
    )
    return [Mismatch(**dict(r)) for r in rows]


# --- reservations -------------------------------------------------------------------


async def get_reservation(
    conn: asyncpg.Connection, run_id: str, *, lock: bool = False
) -> ReservationRow | None:
    suffix = " FOR UPDATE" if lock else ""
    row = await conn.fetchrow(
        f"SELECT {_RES_COLS} FROM reservations WHERE run_id = $1{suffix}", run_id
    )
    return _reservation(row)


# The account row is updated only if it can cover the estimate; the reservation and its
# ledger entry exist only if it was. A run_id reserved before aborts the whole statement
# (unique violation), so nothing is held twice.
_RESERVE_OWN = f"""
WITH held AS (
    UPDATE accounts SET reserved_micros = reserved_micros + $4, updated_at = now()
    WHERE account_id = $2 AND balance_micros - reserved_micros >= $4
    RETURNING account_id
), res AS (
    INSERT INTO reservations ({_RES_COLS})
    SELECT $1, $2, $3, '', $4, 'open', 0, 0, false FROM held
    RETURNING run_id
), entry AS (
    INSERT INTO ledger (id, account_id, kind, amount_micros, run_id, user_id, note)
    SELECT $5, $2, 'reserve', $4, $1, $3, '' FROM res
)
SELECT count(*) FROM res
"""
# A free estimate (template/http-only run) holds nothing: no account row to lock.
_RESERVE_FREE = f"""
WITH res AS (
    INSERT INTO reservations ({_RES_COLS})
    VALUES ($1, $2, $3, '', 0, 'open', 0, 0, false)
    RETURNING run_id
)
INSERT INTO ledger (id, account_id, kind, amount_micros, run_id, user_id, note)
SELECT $4, $2, 'reserve', 0, $1, $3, '' FROM res
"""


async def reserve_own(
    conn: asyncpg.Connection, run_id: str, user_id: str, estimate: int
) -> ReservationRow | None:
    """Reserve `estimate` of the user's own credits for the run in ONE statement (run it
    outside a transaction: the statement is the transaction). None when the balance does
    not cover it or the run_id already has a reservation (the caller reads which)."""
    try:
        if estimate == 0:
            await conn.execute(_RESERVE_FREE, run_id, user_id, user_id, new_id("led"))
        elif not await conn.fetchval(
            _RESERVE_OWN, run_id, user_id, user_id, estimate, new_id("led")
        ):
            return None
    except asyncpg.UniqueViolationError:
        return None
    return ReservationRow(run_id, user_id, user_id, "", estimate, "open", 0, 0)


_RESERVE_FREE_MANY = f"""
WITH res AS (
    INSERT INTO reservations ({_RES_COLS})
    SELECT run_id, user_id, user_id, '', 0, 'open', 0, 0, false
    FROM unnest($1::text[], $2::text[]) AS f (run_id, user_id)
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id, account_id, user_id
)
INSERT INTO ledger (id, account_id, kind, amount_micros, run_id, user_id, note)
SELECT ids.entry_id, res.account_id, 'reserve', 0, res.run_id, res.user_id, ''
FROM res JOIN unnest($1::text[], $3::text[]) AS ids (run_id, entry_id) USING (run_id)
RETURNING run_id
"""


async def reserve_free_many(conn: asyncpg.Connection, runs: list[tuple[str, str]]) -> set[str]:
    """reserve_own(run_id, user_id, 0) for many (run_id, user_id) in ONE statement; answers
    the run ids reserved now (the others already had a reservation)."""
    rows = await conn.fetch(
        _RESERVE_FREE_MANY,
        [run_id for run_id, _ in runs],
        [user_id for _, user_id in runs],
        [new_id("led") for _ in runs],
    )
    return {row["run_id"] for row in rows}


# Priced reservations of users' own accounts, many at once: the accounts are locked in
# id order (so concurrent batches and single reservations cannot deadlock), each
# account's runs are accepted in request order while their running sum fits what it has
# available, and each account's reserved grows once by what was accepted. Runs reserved
# before are left out (the caller answers them one by one, as it does the refused).
_RESERVE_PRICED_MANY = f"""
WITH req AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
        WITH ORDINALITY AS r (run_id, account_id, amount, entry_id, ord)
), locked AS MATERIALIZED (
    SELECT account_id, balance_micros - reserved_micros AS available FROM accounts
    WHERE account_id IN (SELECT account_id FROM req)
    ORDER BY account_id
    FOR UPDATE
), running AS (
    SELECT req.*, locked.available,
           sum(req.amount) OVER (PARTITION BY req.account_id ORDER BY req.ord) AS upto
    FROM req JOIN locked USING (account_id)
    WHERE NOT EXISTS (SELECT 1 FROM reservations r WHERE r.run_id = req.run_id)
), res AS (
    INSERT INTO reservations ({_RES_COLS})
    SELECT run_id, account_id, account_id, '', amount, 'open', 0, 0, false
    FROM running WHERE upto <= available
    ORDER BY run_id
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id, account_id, amount_micros
), held AS (
    UPDATE accounts a SET reserved_micros = a.reserved_micros + s.total, updated_at = now()
    FROM (SELECT account_id, sum(amount_micros) AS total FROM res GROUP BY account_id) s
    WHERE a.account_id = s.account_id
), entry AS (
    INSERT INTO ledger (id, account_id, kind, amount_micros, run_id, user_id, note)
    SELECT req.entry_id, res.account_id, 'reserve', res.amount_micros, res.run_id,
           res.account_id, ''
    FROM res JOIN req USING (run_id)
)
SELECT run_id FROM res
"""


async def reserve_priced_many(
    conn: asyncpg.Connection, runs: list[tuple[str, str, int]]
) -> set[str]:
    """reserve_own(run_id, user_id, estimate) for many (run_id, user_id, estimate > 0) with
    distinct run ids, in ONE statement; answers the run ids reserved now. The others were
    refused (not enough available after the runs before them) or reserved before."""
    rows = await conn.fetch(
        _RESERVE_PRICED_MANY,
        [run_id for run_id, _, _ in runs],
        [user_id for _, user_id, _ in runs],
        [estimate for _, _, estimate in runs],
        [new_id("led") for _ in runs],
    )
    return {row["run_id"] for row in rows}


async def insert_reservation(conn: asyncpg.Connection, res: ReservationRow) -> bool:
    """False when another transaction recorded this run_id first."""
    status = await conn.execute(
        f"INSERT INTO reservations ({_RES_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (run_id) DO NOTHING",
        res.run_id,
        res.account_id,
        res.user_id,
        res.team_id,
        res.amount_micros,
        res.status,
        res.captured_micros,
        res.released_micros,
        res.expired,
    )
    return bool(status == "INSERT 0 1")


async def close_reservation(
    conn: asyncpg.Connection,
    run_id: str,
    status: str,
    captured: int,
    released: int,
    *,
    expired: bool = False,
) -> ReservationRow:
    row = await conn.fetchrow(
        "UPDATE reservations SET status = $2, captured_micros = $3, released_micros = $4,"
        " expired = expired OR $5, closed_at = now()"
        f" WHERE run_id = $1 RETURNING {_RES_COLS}",
        run_id,
        status,
        captured,
        released,
        expired,
    )
    res = _reservation(row)
    assert res is not None
    return res


async def confirm_reservation(conn: asyncpg.Connection, run_id: str) -> bool:
    """Marks the run as committed (its `run.created` event arrived)."""
    status = await conn.execute(
        "UPDATE reservations SET confirmed_at = now() WHERE run_id = $1 AND confirmed_at IS NULL",
        run_id,
    )
    return bool(status == "UPDATE 1")


async def confirm_reservations(conn: asyncpg.Connection, run_ids: list[str]) -> None:
    """confirm_reservation for many runs, in one statement."""
    await conn.execute(
        "UPDATE reservations SET confirmed_at = now()"
        " WHERE run_id = ANY($1::text[]) AND confirmed_at IS NULL",
        run_ids,
    )


# The capture of runs that cost nothing and held nothing (template/http-only runs): no
# balance changes, so no account lock; each open reservation is closed with its ledger
# entry (capture, 0), once. Answers the run ids it captured.
_CAPTURE_FREE = f"""
WITH res AS (
    SELECT run_id, account_id, user_id FROM reservations
    WHERE run_id = ANY($1::text[]) AND status = 'open' AND amount_micros = 0
    ORDER BY run_id
    FOR UPDATE
), closed AS (
    UPDATE reservations r SET status = 'captured', captured_micros = 0, closed_at = now()
    FROM res WHERE r.run_id = res.run_id
    RETURNING {", ".join("r." + c.strip() for c in _RES_COLS.split(","))}
), entry AS (
    INSERT INTO ledger (id, account_id, kind, amount_micros, run_id, user_id, note)
    SELECT ids.entry_id, closed.account_id, 'capture', 0, closed.run_id, closed.user_id, ''
    FROM closed JOIN unnest($1::text[], $2::text[]) AS ids (run_id, entry_id) USING (run_id)
)
SELECT run_id, true AS captured FROM closed
UNION ALL
SELECT u.run_id, false FROM unnest($1::text[]) AS u (run_id)
WHERE NOT EXISTS (SELECT 1 FROM reservations r WHERE r.run_id = u.run_id)
"""


@dataclass(frozen=True)
class FreeCapture:
    captured: set[str]  # open, held nothing: now captured at zero
    # Never reserved: since runs record holds_reservation (runs migration 0008) only
    # runs created before it still send billing copies for such runs. Nothing to do.
    unreserved: set[str]


async def capture_free(conn: asyncpg.Connection, run_ids: list[str]) -> FreeCapture:
    """Captures, at zero, the runs of `run_ids` whose reservation is open and held
    nothing, and finds those that never reserved; any other run of `run_ids` needs the
    general capture."""
    rows = await conn.fetch(_CAPTURE_FREE, run_ids, [new_id("led") for _ in run_ids])
    return FreeCapture(
        captured={row["run_id"] for row in rows if row["captured"]},
        unreserved={row["run_id"] for row in rows if not row["captured"]},
    )


async def lock_own_reservations(
    conn: asyncpg.Connection, run_ids: list[str]
) -> list[ReservationRow]:
    """The reservations of `run_ids` on users' own accounts (not a team's), locked in run
    id order until the transaction ends, whatever their status."""
    rows = await conn.fetch(
        f"SELECT {_RES_COLS} FROM reservations"
        " WHERE run_id = ANY($1::text[]) AND team_id = '' ORDER BY run_id FOR UPDATE",
        run_ids,
    )
    return [ReservationRow(**dict(r)) for r in rows]


async def lock_accounts(conn: asyncpg.Connection, account_ids: list[str]) -> dict[str, AccountRow]:
    """lock_account for many, in account id order (created if new)."""
    ordered = sorted(set(account_ids))
    await conn.execute(
        "INSERT INTO accounts (account_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
        ordered,
    )
    rows = await conn.fetch(
        "SELECT account_id, balance_micros, reserved_micros FROM accounts"
        " WHERE account_id = ANY($1::text[]) ORDER BY account_id FOR UPDATE",
        ordered,
    )
    return {r["account_id"]: AccountRow(**dict(r)) for r in rows}


async def add_to_accounts(conn: asyncpg.Connection, deltas: dict[str, tuple[int, int]]) -> None:
    """add_to_account for many: account_id -> (balance delta, reserved delta)."""
    await conn.execute(
        "UPDATE accounts a SET balance_micros = a.balance_micros + d.balance,"
        " reserved_micros = a.reserved_micros + d.reserved, updated_at = now()"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS d (account_id, balance, reserved)"
        " WHERE a.account_id = d.account_id",
        list(deltas),
        [balance for balance, _ in deltas.values()],
        [reserved for _, reserved in deltas.values()],
    )


@dataclass(frozen=True)
class Closing:
    """A reservation to close as captured, and the ledger entries that say so."""

    res: ReservationRow
    captured: int
    released: int  # given back now (the reservation's released_micros grows by it)
    note: str


async def capture_reservations(conn: asyncpg.Connection, closings: list[Closing]) -> None:
    """close_reservation(..., "captured", ...) and the capture (and, when something is
    given back, release) ledger entries of many runs, in two statements."""
    await conn.execute(
        "UPDATE reservations r SET status = 'captured', captured_micros = c.captured,"
        " released_micros = r.released_micros + c.released, closed_at = now()"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS c (run_id, captured, released)"
        " WHERE r.run_id = c.run_id",
        [c.res.run_id for c in closings],
        [c.captured for c in closings],
        [c.released for c in closings],
    )
    entries = [
        (
            new_id("led"),
            c.res.account_id,
            "capture",
            c.captured,
            c.res.run_id,
            c.res.user_id,
            c.note,
        )
        for c in closings
    ] + [
        (new_id("led"), c.res.account_id, "release", c.released, c.res.run_id, c.res.user_id, "")
        for c in closings
        if c.released
    ]
    await conn.execute(
        "INSERT INTO ledger (id, account_id, kind, amount_micros, run_id, user_id, note)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],"
        " $6::text[], $7::text[])",
        *(list(column) for column in zip(*entries, strict=True)),
    )


async def is_unconfirmed(conn: asyncpg.Connection, run_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT confirmed_at IS NULL FROM reservations WHERE run_id = $1", run_id
        )
    )


async def stale_unconfirmed(
    conn: asyncpg.Connection, older_than_seconds: float, limit: int
) -> list[str]:
    rows = await conn.fetch(
        "SELECT run_id FROM reservations WHERE status = 'open' AND confirmed_at IS NULL"
        " AND created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2",
        older_than_seconds,
        limit,
    )
    return [r["run_id"] for r in rows]


# --- allocations --------------------------------------------------------------------


async def upsert_allocation(
    conn: asyncpg.Connection, team_id: str, user_id: str, monthly_micros: int
) -> None:
    await conn.execute(
        "INSERT INTO allocations (team_id, user_id, monthly_micros) VALUES ($1, $2, $3)"
        " ON CONFLICT (team_id, user_id) DO UPDATE SET"
        " monthly_micros = EXCLUDED.monthly_micros, updated_at = now()",
        team_id,
        user_id,
        monthly_micros,
    )


async def lock_allocation(conn: asyncpg.Connection, team_id: str, user_id: str) -> int | None:
    """The member's monthly allocation, locked so the member's reservations serialise."""
    value = await conn.fetchval(
        "SELECT monthly_micros FROM allocations WHERE team_id = $1 AND user_id = $2 FOR UPDATE",
        team_id,
        user_id,
    )
    return None if value is None else int(value)


async def get_allocation(conn: asyncpg.Connection, team_id: str, user_id: str) -> int | None:
    value = await conn.fetchval(
        "SELECT monthly_micros FROM allocations WHERE team_id = $1 AND user_id = $2",
        team_id,
        user_id,
    )
    return None if value is None else int(value)


async def member_spent_this_month(conn: asyncpg.Connection, team_id: str, user_id: str) -> int:
    """What the member used of the team this (UTC) month: captures closed this month plus
    every open reservation (money already promised counts against the allocation)."""
    value = await conn.fetchval(
        "SELECT COALESCE(SUM(CASE WHEN status = 'open' THEN amount_micros"
        " ELSE captured_micros END), 0) FROM reservations"
        " WHERE account_id = $1 AND user_id = $2 AND (status = 'open' OR (status = 'captured'"
        " AND closed_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'))",
        team_id,
        user_id,
    )
    return int(value)
