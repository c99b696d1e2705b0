"""The console's people: invites, passwords (argon2id), sign-in limits and sessions."""

import asyncio
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.auth.people_repository import SessionRow
from services.auth.repository import UserRow
from services.auth.service import SCOPES, Account, Principal
from weftcore.errors import InvalidArgument, ResourceExhausted, Unauthenticated
from weftcore.ids import utcnow

log = logging.getLogger(__name__)

INVITE_PREFIX = "winv_"
SESSION_PREFIX = "wses_"
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
WRONG_CREDENTIALS = "Wrong email or password."
BAD_INVITE = "This invite link is invalid, used or expired. Ask for a new one."
BAD_SESSION = "Not signed in, or the session has ended."

# argon2-cffi's defaults are argon2id (RFC 9106's low-memory profile).
_HASHER = PasswordHasher()
# Verified against when the email is unknown, so that case costs the same time.
_DUMMY_HASH = _HASHER.hash("not a real password, never matches")


@dataclass(frozen=True)
class PeopleConfig:
    invite_seconds: int = 72 * 3600
    session_seconds: int = 12 * 3600
    failure_window_seconds: int = 15 * 60
    max_failures_per_email: int = 5
    max_failures_per_ip: int = 30


class Repository(Protocol):
    async def user_by_email(self, email: str) -> UserRow | None: ...
    async def create_invite(
        self, token_hash: bytes, user_id: str, expires_at: datetime
    ) -> None: ...
    async def accept_invite(
        self, token_hash: bytes, password_hash: str, now: datetime
    ) -> str | None: ...
    async def password_of(self, email: str) -> tuple[str, str] | None: ...
    async def set_password_hash(self, user_id: str, password_hash: str) -> None: ...
    async def recent_failures(
        self, email: str, client_ip: str, since: datetime
    ) -> tuple[int, int]: ...
    async def record_failure(self, email: str, client_ip: str, now: datetime) -> None: ...
    async def create_session(
        self, token_hash: bytes, user_id: str, expires_at: datetime
    ) -> None: ...
    async def find_session(self, token_hash: bytes, now: datetime) -> SessionRow | None: ...
    async def delete_session(self, token_hash: bytes) -> None: ...


def token_hash(token: str) -> bytes:
    """Invite and session tokens carry 256 random bits: a plain sha256 is enough to store."""
    return hashlib.sha256(token.encode()).digest()


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def check_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidArgument(
            f"The password must be {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_CHARS} characters.",
            param="password",
        )
    return password


def session_principal(row: SessionRow) -> Principal:
    """A person in the console acts as their account (and team) with every scope."""
    account = Account(
        row.user_id, row.email, row.user_plan, row.team_id, row.team_plan, row.team_role
    )
    return account.principal(
        key_id="", key_name="console", scopes=SCOPES, expires_at=row.expires_at
    )


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


class People:
    def __init__(self, repo: Repository, config: PeopleConfig) -> None:
        self.repo = repo
        self.config = config

    async def invite(
        self, user: UserRow, ttl_seconds: int, now: datetime | None = None
    ) -> tuple[str, datetime]:
        """A one-time invite link token for `user`, and when it expires."""
        now = now or utcnow()
        ttl = ttl_seconds or self.config.invite_seconds
        if ttl < 1:
            raise InvalidArgument("ttl_seconds must be positive.", param="ttl_seconds")
        token = new_token(INVITE_PREFIX)
        expires_at = now + timedelta(seconds=ttl)
        await self.repo.create_invite(token_hash(token), user.id, expires_at)
        log.info("invite created", extra={"user_id": user.id})
        return token, expires_at

    async def accept_invite(self, token: str, password: str, now: datetime | None = None) -> str:
        """Set the invited user's password; answers their id."""
        check_password(password)
        if not token.startswith(INVITE_PREFIX) or len(token) > 100:
            raise InvalidArgument(BAD_INVITE, param="token")
        hashed = await asyncio.to_thread(_HASHER.hash, password)
        user_id = await self.repo.accept_invite(token_hash(token), hashed, now or utcnow())
        if user_id is None:
            raise InvalidArgument(BAD_INVITE, param="token")
        log.info("invite accepted", extra={"user_id": user_id})
        return user_id

    async def sign_in(
        self, email: str, password: str, client_ip: str, now: datetime | None = None
    ) -> tuple[str, str, datetime]:
        """(session token, user id, expiry); the same error for any wrong email or password."""
        now = now or utcnow()
        email = email.strip()[:254]
        since = now - timedelta(seconds=self.config.failure_window_seconds)
        by_email, by_ip = await self.repo.recent_failures(email, client_ip, since)
        limits = self.config
        if by_email >= limits.max_failures_per_email or by_ip >= limits.max_failures_per_ip:
            raise ResourceExhausted(
                "Too many failed sign-ins. Wait a few minutes and try again.",
                extra={"retry_after": self.config.failure_window_seconds},
            )
        found = await self.repo.password_of(email) if email else None
        stored = found[1] if found else _DUMMY_HASH
        ok = await asyncio.to_thread(_verify, stored, password[:MAX_PASSWORD_CHARS])
        if found is None or not ok:
            await self.repo.record_failure(email, client_ip, now)
            raise Unauthenticated(WRONG_CREDENTIALS)
        user_id = found[0]
        if _HASHER.check_needs_rehash(stored):
            rehashed = await asyncio.to_thread(_HASHER.hash, password)
            await self.repo.set_password_hash(user_id, rehashed)
        # A fresh token at every sign-in: nothing a visitor held before is ever a session.
        token = new_token(SESSION_PREFIX)
        expires_at = now + timedelta(seconds=self.config.session_seconds)
        await self.repo.create_session(token_hash(token), user_id, expires_at)
        log.info("signed in", extra={"user_id": user_id})
        return token, user_id, expires_at

    async def authenticate(self, token: str, now: datetime | None = None) -> Principal:
        if not token.startswith(SESSION_PREFIX) or len(token) > 100:
            raise Unauthenticated(BAD_SESSION)
        row = await self.repo.find_session(token_hash(token), now or utcnow())
        if row is None:
            raise Unauthenticated(BAD_SESSION)
        return session_principal(row)

    async def sign_out(self, token: str) -> None:
        if token.startswith(SESSION_PREFIX) and len(token) <= 100:
            await self.repo.delete_session(token_hash(token))
