"""Accounts and API keys: key minting, hashing, authentication and validation rules."""

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from services.auth.repository import AuthRow, KeyRow, TeamRow, UserRow
from weftcore.errors import InvalidArgument, NotFound, Unauthenticated
from weftcore.ids import has_prefix, new_id, utcnow
from weftcore.plans import PLANS

log = logging.getLogger(__name__)

TOKEN_PREFIX = "wft_live_"
# token_urlsafe(32): 32 random bytes = 256 bits, 43 url-safe base64 characters.
SECRET_BYTES = 32
_TOKEN_RE = re.compile(r"^wft_live_[A-Za-z0-9_-]{43}$")
# Characters of the secret kept in clear (as `prefix`) so people can recognise a key;
# 4 of 43 characters leave 232 bits unknown.
_PREFIX_CHARS = 4

RUNS_CREATE_SCOPE = "workflow_runs:create"
TEAM_ROLES = ("admin", "member", "viewer")
SCOPES = ("workflows:read", "workflows:write", RUNS_CREATE_SCOPE)

# One message for every bad key: no hint whether it was malformed, unknown, revoked or expired.
UNAUTHENTICATED_MESSAGE = "Missing or invalid API key. Send `Authorization: Bearer wft_live_...`."


def new_token() -> str:
    """A fresh bearer token `wft_live_<43 chars>` with 256 bits of randomness."""
    return TOKEN_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hash_token(token: str) -> bytes:
    """The stored form of a token.

    A fast unsalted sha256 is right here (unlike for passwords): the secret has 256 bits
    of entropy, so guessing is hopeless however fast the hash, and an unsalted digest lets
    Authenticate be one unique-index lookup instead of a scan with a slow KDF per row.
    """
    return hashlib.sha256(token.encode()).digest()


def well_formed(token: str) -> bool:
    return bool(_TOKEN_RE.match(token))


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str
    plan: str  # effective: the team's plan when the user is on a team
    team_id: str | None
    key_id: str
    key_name: str
    scopes: list[str]
    has_allowlist: bool
    workflow_allowlist: list[str]
    expires_at: datetime | None
    version_pins: dict[str, int] = field(default_factory=dict)
    team_role: str | None = None  # on a team: admin | member | viewer


@dataclass(frozen=True)
class Account:
    """Who a principal acts as: the user, and their team (if any) with its plan and the
    user's role on it."""

    user_id: str
    email: str
    user_plan: str
    team_id: str | None
    team_plan: str | None
    team_role: str | None

    def principal(
        self,
        *,
        key_id: str,
        key_name: str,
        scopes: Sequence[str],
        allowlist: Sequence[str] | None = None,
        expires_at: datetime | None = None,
        version_pins: dict[str, int] | None = None,
    ) -> Principal:
        """The principal of a key (or a session, a public endpoint's payer: key_id "")
        acting as this account; on a team, with the team's plan."""
        on_team = self.team_id is not None and self.team_plan is not None
        return Principal(
            user_id=self.user_id,
            email=self.email,
            plan=self.team_plan if on_team and self.team_plan else self.user_plan,
            team_id=self.team_id if on_team else None,
            key_id=key_id,
            key_name=key_name,
            scopes=list(scopes),
            has_allowlist=allowlist is not None,
            workflow_allowlist=list(allowlist or []),
            expires_at=expires_at,
            version_pins=dict(version_pins or {}),
            team_role=self.team_role if on_team else None,
        )


class Repository(Protocol):
    async def create_user(self, user_id: str, email: str, plan: str) -> UserRow: ...
    async def get_user(self, user_id: str) -> UserRow: ...
    async def get_team(self, team_id: str) -> TeamRow: ...
    async def set_user_plan(self, user_id: str, plan: str) -> UserRow: ...
    async def create_team(self, team_id: str, name: str, plan: str) -> TeamRow: ...
    async def set_team_plan(self, team_id: str, plan: str) -> TeamRow: ...
    async def add_member(self, team_id: str, user_id: str, role: str) -> TeamRow: ...
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
    ) -> KeyRow: ...
    async def list_keys(self, user_id: str) -> list[KeyRow]: ...
    async def revoke_key(self, key_id: str) -> KeyRow: ...
    async def find_by_hash(self, secret_hash: bytes) -> AuthRow | None: ...
    async def touch_keys(self, last_used: dict[str, datetime]) -> None: ...


class LastUsed:
    """Collects key uses in memory and writes them in one batch every `interval` seconds,
    so authentication never costs a database write per request."""

    def __init__(self, repo: Repository, interval: float) -> None:
        self.repo = repo
        self.interval = interval
        self._pending: dict[str, datetime] = {}

    def record(self, key_id: str, at: datetime) -> None:
        self._pending[key_id] = at

    async def flush(self) -> None:
        batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            await self.repo.touch_keys(batch)
        except Exception:
            # Keep the newest uses for the next attempt; a lost timestamp is harmless.
            log.warning("could not record key use; will retry", exc_info=True)
            for key_id, at in batch.items():
                self._pending.setdefault(key_id, at)

    async def run(self) -> None:
        """Flush periodically until cancelled, then flush once more."""
        try:
            while True:
                await asyncio.sleep(self.interval)
                await self.flush()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())


def _plan(plan: str) -> str:
    if plan not in PLANS:
        raise InvalidArgument(f"plan must be one of {', '.join(PLANS)}.", param="plan")
    return plan


def _email(email: str) -> str:
    email = email.strip()
    if not 3 <= len(email) <= 254 or "@" not in email or " " in email:
        raise InvalidArgument("email must be a valid email address.", param="email")
    return email


def _scopes(scopes: Sequence[str]) -> list[str]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise InvalidArgument(
            f"scopes must be a non-empty subset of {', '.join(SCOPES)}.", param="scopes"
        )
    return [s for s in SCOPES if s in scopes]  # canonical order, no duplicates


class AuthService:
    def __init__(self, repo: Repository, last_used: LastUsed) -> None:
        self.repo = repo
        self.last_used = last_used

    async def authenticate(self, token: str, now: datetime | None = None) -> Principal:
        """The principal behind a bearer token; the same Unauthenticated for any bad key."""
        now = now or utcnow()
        if not well_formed(token):
            raise Unauthenticated(UNAUTHENTICATED_MESSAGE)
        row = await self.repo.find_by_hash(hash_token(token))
        if row is None:
            raise Unauthenticated(UNAUTHENTICATED_MESSAGE)
        key = row.key
        if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
            raise Unauthenticated(UNAUTHENTICATED_MESSAGE)
        self.last_used.record(key.id, now)
        account = Account(
            key.user_id, row.email, row.user_plan, row.team_id, row.team_plan, row.team_role
        )
        return account.principal(
            key_id=key.id,
            key_name=key.name,
            scopes=key.scopes,
            allowlist=key.workflow_allowlist if key.has_allowlist else None,
            expires_at=key.expires_at,
            version_pins=key.version_pins,
        )

    async def principal_for_account(self, user_id: str, team_id: str = "") -> Principal:
        """A user's principal without a key, for a public endpoint's keyless calls that
        the user pays for: it may only create runs. `team_id`: the user must still be on
        that team (NotFound otherwise), whose credits pay."""
        user = await self.repo.get_user(user_id)
        if team_id and user.team_id != team_id:
            raise NotFound(f"User {user_id} is not on team {team_id}.")
        team_plan = (await self.repo.get_team(user.team_id)).plan if user.team_id else None
        account = Account(user.id, user.email, user.plan, user.team_id, team_plan, user.team_role)
        return account.principal(key_id="", key_name="public endpoint", scopes=[RUNS_CREATE_SCOPE])

    async def create_user(self, email: str, plan: str) -> UserRow:
        return await self.repo.create_user(new_id("usr"), _email(email), _plan(plan or "free"))

    async def get_user(self, user_id: str) -> UserRow:
        return await self.repo.get_user(user_id)

    async def get_team(self, team_id: str) -> TeamRow:
        return await self.repo.get_team(team_id)

    async def set_user_plan(self, user_id: str, plan: str) -> UserRow:
        return await self.repo.set_user_plan(user_id, _plan(plan))

    async def create_team(self, name: str, plan: str) -> TeamRow:
        name = name.strip()
        if not 1 <= len(name) <= 200:
            raise InvalidArgument("name must be 1-200 characters.", param="name")
        return await self.repo.create_team(new_id("team"), name, _plan(plan or "team"))

    async def set_team_plan(self, team_id: str, plan: str) -> TeamRow:
        return await self.repo.set_team_plan(team_id, _plan(plan))

    async def add_member(self, team_id: str, user_id: str, role: str = "") -> TeamRow:
        """Put the user on the team with `role` (default member); again: move or re-role."""
        role = role or "member"
        if role not in TEAM_ROLES:
            raise InvalidArgument(f"role must be one of {', '.join(TEAM_ROLES)}.", param="role")
        return await self.repo.add_member(team_id, user_id, role)

    async def create_key(
        self,
        user_id: str,
        name: str,
        scopes: Sequence[str],
        has_allowlist: bool,
        allowlist: Sequence[str],
        expires_at_unix: int,
        now: datetime | None = None,
        version_pins: dict[str, int] | None = None,
    ) -> tuple[KeyRow, str]:
        """Mint a key; answers the stored key and the secret (returned this once only)."""
        now = now or utcnow()
        name = name.strip()
        if not 1 <= len(name) <= 200:
            raise InvalidArgument("name must be 1-200 characters.", param="name")
        bad = [w for w in allowlist if not has_prefix(w, "wf")]
        if bad:
            raise InvalidArgument(
                "workflow_allowlist holds workflow ids (wf_...).", param="workflow_allowlist"
            )
        pins = dict(version_pins or {})
        for workflow_id, version in pins.items():
            if not has_prefix(workflow_id, "wf") or version < 1:
                raise InvalidArgument(
                    "version_pins maps workflow ids (wf_...) to versions (1 or more).",
                    param="version_pins",
                )
        expires_at = None
        if expires_at_unix:
            expires_at = datetime.fromtimestamp(expires_at_unix, UTC)
            if expires_at <= now:
                raise InvalidArgument("expires_at must be in the future.", param="expires_at")
        token = new_token()
        key = await self.repo.create_key(
            new_id("key"),
            user_id,
            name,
            token[: len(TOKEN_PREFIX) + _PREFIX_CHARS],
            hash_token(token),
            _scopes(scopes),
            has_allowlist,
            list(dict.fromkeys(allowlist)),
            expires_at,
            pins,
        )
        log.info("api key created", extra={"key_id": key.id, "user_id": user_id})
        return key, token

    async def list_keys(self, user_id: str) -> list[KeyRow]:
        await self.repo.get_user(user_id)
        return await self.repo.list_keys(user_id)

    async def revoke_key(self, key_id: str) -> KeyRow:
        key = await self.repo.revoke_key(key_id)
        log.info("api key revoked", extra={"key_id": key_id})
        return key
