"""SQL of the auth schema: users, teams, memberships and API keys (hashes only)."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from weftcore.errors import Conflict, NotFound


@dataclass(frozen=True)
class UserRow:
    id: str
    email: str
    plan: str
    team_id: str | None
    created_at: datetime
    team_role: str | None = None  # on a team: admin | member | viewer


@dataclass(frozen=True)
class TeamRow:
    id: str
    name: str
    plan: str
    member_ids: list[str]
    created_at: datetime
    member_roles: dict[str, str] = field(default_factory=dict)  # user id -> role


@dataclass(frozen=True)
class KeyRow:
    id: str
    user_id: str
    name: str
    prefix: str
    scopes: list[str]
    has_allowlist: bool
    workflow_allowlist: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    version_pins: dict[str, int]


@dataclass(frozen=True)
class AuthRow:
    """Everything Authenticate needs, from one indexed lookup."""

    key: KeyRow
    email: str
    user_plan: str
    team_id: str | None
    team_plan: str | None
    team_role: str | None = None


_KEY_COLUMNS = (
    "k.id, k.user_id, k.name, k.prefix, k.scopes, k.has_allowlist, k.workflow_allowlist,"
    " k.created_at, k.expires_at, k.revoked_at, k.last_used_at, k.version_pins"
)


def _key(r: asyncpg.Record) -> KeyRow:
    return KeyRow(
        id=r["id"],
        user_id=r["user_id"],
        name=r["name"],
        prefix=r["prefix"],
        scopes=list(r["scopes"]),
        has_allowlist=r["has_allowlist"],
        workflow_allowlist=list(r["workflow_allowlist"]),
        created_at=r["created_at"],
        expires_at=r["expires_at"],
        revoked_at=r["revoked_at"],
        last_used_at=r["last_used_at"],
        version_pins={k: int(v) for k, v in (r["version_pins"] or {}).items()},
    )


class AuthRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- users and teams ---------------------------------------------------------------

    async def create_user(self, user_id: str, email: str, plan: str) -> UserRow:
        try:
            r = await self.pool.fetchrow(
                "INSERT INTO users (id, email, plan) VALUES ($1, $2, $3)"
                " RETURNING id, email, plan, created_at",
                user_id,
                email,
                plan,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict("A user with this email exists.", code="ALREADY_EXISTS") from None
        assert r is not None
        return UserRow(r["id"], r["email"], r["plan"], None, r["created_at"])

    async def get_user(self, user_id: str) -> UserRow:
        r = await self.pool.fetchrow(
            "SELECT u.id, u.email, u.plan, u.created_at, m.team_id, m.role FROM users u"
            " LEFT JOIN memberships m ON m.user_id = u.id WHERE u.id = $1",
            user_id,
        )
        if r is None:
            raise NotFound(f"No user {user_id}.")
        return UserRow(r["id"], r["email"], r["plan"], r["team_id"], r["created_at"], r["role"])

    async def set_user_plan(self, user_id: str, plan: str) -> UserRow:
        done = await self.pool.execute("UPDATE users SET plan = $2 WHERE id = $1", user_id, plan)
        if done.endswith(" 0"):
            raise NotFound(f"No user {user_id}.")
        return await self.get_user(user_id)

    async def create_team(self, team_id: str, name: str, plan: str) -> TeamRow:
        r = await self.pool.fetchrow(
            "INSERT INTO teams (id, name, plan) VALUES ($1, $2, $3)"
            " RETURNING id, name, plan, created_at",
            team_id,
            name,
            plan,
        )
        assert r is not None
        return TeamRow(r["id"], r["name"], r["plan"], [], r["created_at"])

    async def get_team(self, team_id: str) -> TeamRow:
        r = await self.pool.fetchrow(
            "SELECT t.id, t.name, t.plan, t.created_at,"
            " coalesce(array_agg(m.user_id ORDER BY m.created_at)"
            "   FILTER (WHERE m.user_id IS NOT NULL), '{}') AS member_ids,"
            " coalesce(array_agg(m.role ORDER BY m.created_at)"
            "   FILTER (WHERE m.user_id IS NOT NULL), '{}') AS member_roles"
            " FROM teams t LEFT JOIN memberships m ON m.team_id = t.id"
            " WHERE t.id = $1 GROUP BY t.id",
            team_id,
        )
        if r is None:
            raise NotFound(f"No team {team_id}.")
        members = list(r["member_ids"])
        roles = dict(zip(members, r["member_roles"], strict=True))
        return TeamRow(r["id"], r["name"], r["plan"], members, r["created_at"], roles)

    async def set_team_plan(self, team_id: str, plan: str) -> TeamRow:
        done = await self.pool.execute("UPDATE teams SET plan = $2 WHERE id = $1", team_id, plan)
        if done.endswith(" 0"):
            raise NotFound(f"No team {team_id}.")
        return await self.get_team(team_id)

    async def add_member(self, team_id: str, user_id: str, role: str) -> TeamRow:
        await self.get_team(team_id)
        await self.get_user(user_id)
        # A user is on one team at most; adding again moves them, or sets their role.
        await self.pool.execute(
            "INSERT INTO memberships (user_id, team_id, role) VALUES ($1, $2, $3)"
            " ON CONFLICT (user_id) DO UPDATE SET team_id = EXCLUDED.team_id,"
            " role = EXCLUDED.role",
            user_id,
            team_id,
            role,
        )
        return await self.get_team(team_id)

    # -- keys --------------------------------------------------------------------------

    async def create_key(
        self,
        key_id: str,
        user_id: str,
        name: str,
        prefix: str,
        secret_hash: bytes,
        scopes: Sequence[str],
        has_allowlist: bool,
        allowlist: Sequence[str],
        expires_at: datetime | None,
        version_pins: dict[str, int] | None = None,
    ) -> KeyRow:
        await self.get_user(user_id)
        r = await self.pool.fetchrow(
            "INSERT INTO api_keys AS k (id, user_id, name, prefix, secret_hash, scopes,"
            " has_allowlist, workflow_allowlist, expires_at, version_pins)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            f" RETURNING {_KEY_COLUMNS}",
            key_id,
            user_id,
            name,
            prefix,
            secret_hash,
            list(scopes),
            has_allowlist,
            list(allowlist),
            expires_at,
            dict(version_pins or {}),
        )
        assert r is not None
        return _key(r)

    async def list_keys(self, user_id: str) -> list[KeyRow]:
        rows = await self.pool.fetch(
            f"SELECT {_KEY_COLUMNS} FROM api_keys k WHERE k.user_id = $1 ORDER BY k.created_at",
            user_id,
        )
        return [_key(r) for r in rows]

    async def revoke_key(self, key_id: str) -> KeyRow:
        # coalesce: revoking twice keeps the first revocation time.
        r = await self.pool.fetchrow(
            "UPDATE api_keys AS k SET revoked_at = coalesce(k.revoked_at, now())"
            f" WHERE k.id = $1 RETURNING {_KEY_COLUMNS}",
            key_id,
        )
        if r is None:
            raise NotFound(f"No key {key_id}.")
        return _key(r)

    async def find_by_hash(self, secret_hash: bytes) -> AuthRow | None:
        r = await self.pool.fetchrow(
            f"SELECT {_KEY_COLUMNS}, u.email, u.plan AS user_plan, m.team_id, t.plan AS team_plan,"
            " m.role AS team_role"
            " FROM api_keys k JOIN users u ON u.id = k.user_id"
            " LEFT JOIN memberships m ON m.user_id = u.id"
            " LEFT JOIN teams t ON t.id = m.team_id"
            " WHERE k.secret_hash = $1",
            secret_hash,
        )
        if r is None:
            return None
        return AuthRow(
            _key(r), r["email"], r["user_plan"], r["team_id"], r["team_plan"], r["team_role"]
        )

    async def touch_keys(self, last_used: dict[str, datetime]) -> None:
        """Record last use of many keys in one statement (never moving a time backwards)."""
        if not last_used:
            return
        ids = list(last_used)
        await self.pool.execute(
            "UPDATE api_keys AS k SET last_used_at = greatest(k.last_used_at, u.at)"
            " FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at) WHERE k.id = u.id",
            ids,
            [last_used[i] for i in ids],
        )
