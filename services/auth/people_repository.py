"""SQL of the console's people: passwords, invites, sessions and failed sign-ins."""

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.auth.repository import UserRow


@dataclass(frozen=True)
class SessionRow:
    user_id: str
    email: str
    user_plan: str
    team_id: str | None
    team_plan: str | None
    expires_at: datetime
    team_role: str | None = None  # on a team: admin | member | viewer


class PeopleRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def user_by_email(self, email: str) -> UserRow | None:
        r = await self.pool.fetchrow(
            "SELECT u.id, u.email, u.plan, u.created_at, m.team_id FROM users u"
            " LEFT JOIN memberships m ON m.user_id = u.id WHERE lower(u.email) = lower($1)",
            email,
        )
        if r is None:
            return None
        return UserRow(r["id"], r["email"], r["plan"], r["team_id"], r["created_at"])

    async def create_invite(self, token_hash: bytes, user_id: str, expires_at: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO invites (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
            token_hash,
            user_id,
            expires_at,
        )

    async def accept_invite(
        self, token_hash: bytes, password_hash: str, now: datetime
    ) -> str | None:
        """Use the invite once and set its user's password; answers the user id, or None
        for an unknown, used or expired invite. One transaction: a race uses it once."""
        async with self.pool.acquire() as conn, conn.transaction():
            user_id = await conn.fetchval(
                "UPDATE invites SET used_at = $2 WHERE token_hash = $1"
                " AND used_at IS NULL AND expires_at > $2 RETURNING user_id",
                token_hash,
                now,
            )
            if user_id is None:
                return None
            await conn.execute(
                "INSERT INTO passwords (user_id, hash) VALUES ($1, $2) ON CONFLICT (user_id)"
                " DO UPDATE SET hash = EXCLUDED.hash, updated_at = now()",
                user_id,
                password_hash,
            )
            # A new password ends every session opened with the old one.
            await conn.execute("DELETE FROM sessions WHERE user_id = $1", user_id)
            return str(user_id)

    async def password_of(self, email: str) -> tuple[str, str] | None:
        """(user id, argon2 hash) of the user with this email, if they set a password."""
        r = await self.pool.fetchrow(
            "SELECT u.id, p.hash FROM users u JOIN passwords p ON p.user_id = u.id"
            " WHERE lower(u.email) = lower($1)",
            email,
        )
        return (r["id"], r["hash"]) if r is not None else None

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        await self.pool.execute(
            "UPDATE passwords SET hash = $2, updated_at = now() WHERE user_id = $1",
            user_id,
            password_hash,
        )

    async def recent_failures(self, email: str, client_ip: str, since: datetime) -> tuple[int, int]:
        """Failed sign-ins since `since`: (for this email, from this IP)."""
        r = await self.pool.fetchrow(
            "SELECT"
            " (SELECT count(*) FROM login_failures WHERE lower(email) = lower($1) AND at > $3),"
            " (SELECT count(*) FROM login_failures WHERE client_ip = $2 AND at > $3)",
            email,
            client_ip,
            since,
        )
        assert r is not None
        return int(r[0]), int(r[1])

    async def record_failure(self, email: str, client_ip: str, now: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO login_failures (email, client_ip, at) VALUES ($1, $2, $3)",
            email[:254],
            client_ip[:64],
            now,
        )

    async def create_session(self, token_hash: bytes, user_id: str, expires_at: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
            token_hash,
            user_id,
            expires_at,
        )

    async def find_session(self, token_hash: bytes, now: datetime) -> SessionRow | None:
        r = await self.pool.fetchrow(
            "SELECT s.user_id, s.expires_at, u.email, u.plan AS user_plan, m.team_id,"
            " t.plan AS team_plan, m.role AS team_role"
            " FROM sessions s JOIN users u ON u.id = s.user_id"
            " LEFT JOIN memberships m ON m.user_id = u.id"
            " LEFT JOIN teams t ON t.id = m.team_id"
            " WHERE s.token_hash = $1 AND s.expires_at > $2",
            token_hash,
            now,
        )
        if r is None:
            return None
        return SessionRow(
            r["user_id"],
            r["email"],
            r["user_plan"],
            r["team_id"],
            r["team_plan"],
            r["expires_at"],
            r["team_role"],
        )

    async def delete_session(self, token_hash: bytes) -> None:
        await self.pool.execute("DELETE FROM sessions WHERE token_hash = $1", token_hash)

    async def prune(self, now: datetime, failures_before: datetime) -> None:
        """Drop expired sessions and invites, and failures older than any window."""
        await self.pool.execute("DELETE FROM sessions WHERE expires_at <= $1", now)
        await self.pool.execute("DELETE FROM invites WHERE expires_at <= $1", now)
        await self.pool.execute("DELETE FROM login_failures WHERE at <= $1", failures_before)
