"""Invites, passwords, sign-in limits and sessions, against an in-memory repository."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from services.auth.people import (
    BAD_INVITE,
    WRONG_CREDENTIALS,
    People,
    PeopleConfig,
    token_hash,
)
from services.auth.people_repository import SessionRow
from services.auth.repository import UserRow
from weftcore.errors import InvalidArgument, ResourceExhausted, Unauthenticated

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
USER = UserRow("usr_1", "Ann@Example.com", "pro", "team_1", T0)


@dataclass
class FakeRepo:
    invites: dict[bytes, tuple[str, datetime, bool]] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    sessions: dict[bytes, tuple[str, datetime]] = field(default_factory=dict)
    failures: list[tuple[str, str, datetime]] = field(default_factory=list)

    async def user_by_email(self, email: str) -> UserRow | None:
        return USER if email.lower() == USER.email.lower() else None

    async def create_invite(self, h: bytes, user_id: str, expires_at: datetime) -> None:
        self.invites[h] = (user_id, expires_at, False)

    async def accept_invite(self, h: bytes, password_hash: str, now: datetime) -> str | None:
        found = self.invites.get(h)
        if found is None or found[2] or found[1] <= now:
            return None
        self.invites[h] = (found[0], found[1], True)
        self.passwords[found[0]] = password_hash
        self.sessions = {k: v for k, v in self.sessions.items() if v[0] != found[0]}
        return found[0]

    async def password_of(self, email: str) -> tuple[str, str] | None:
        if email.lower() != USER.email.lower() or USER.id not in self.passwords:
            return None
        return USER.id, self.passwords[USER.id]

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        self.passwords[user_id] = password_hash

    async def recent_failures(self, email: str, ip: str, since: datetime) -> tuple[int, int]:
        recent = [f for f in self.failures if f[2] > since]
        return (
            sum(1 for f in recent if f[0].lower() == email.lower()),
            sum(1 for f in recent if f[1] == ip),
        )

    async def record_failure(self, email: str, ip: str, now: datetime) -> None:
        self.failures.append((email, ip, now))

    async def create_session(self, h: bytes, user_id: str, expires_at: datetime) -> None:
        self.sessions[h] = (user_id, expires_at)

    async def find_session(self, h: bytes, now: datetime) -> SessionRow | None:
        found = self.sessions.get(h)
        if found is None or found[1] <= now:
            return None
        return SessionRow(found[0], USER.email, "pro", "team_1", "team", found[1])

    async def delete_session(self, h: bytes) -> None:
        self.sessions.pop(h, None)


def people(repo: FakeRepo, **config: int) -> People:
    return People(repo, PeopleConfig(**config))


async def invited(repo: FakeRepo, password: str = "a good long password") -> People:
    p = people(repo, max_failures_per_email=3, max_failures_per_ip=5)
    token, expires_at = await p.invite(USER, 3600, now=T0)
    assert token.startswith("winv_") and expires_at == T0 + timedelta(hours=1)
    assert token_hash(token) in repo.invites and token.encode() not in repo.invites
    await p.accept_invite(token, password, now=T0)
    return p


async def test_invite_sets_an_argon2id_password_once() -> None:
    repo = FakeRepo()
    p = people(repo)
    token, _ = await p.invite(USER, 3600, now=T0)
    assert await p.accept_invite(token, "a good long password", now=T0) == USER.id
    assert repo.passwords[USER.id].startswith("$argon2id$")
    with pytest.raises(InvalidArgument, match="used or expired"):
        await p.accept_invite(token, "another good password", now=T0)


async def test_an_expired_invite_is_refused() -> None:
    repo = FakeRepo()
    p = people(repo)
    token, _ = await p.invite(USER, 60, now=T0)
    with pytest.raises(InvalidArgument) as caught:
        await p.accept_invite(token, "a good long password", now=T0 + timedelta(seconds=61))
    assert caught.value.message == BAD_INVITE


@pytest.mark.parametrize("password", ["short", "x" * 1025])
async def test_password_length_is_checked(password: str) -> None:
    repo = FakeRepo()
    p = people(repo)
    token, _ = await p.invite(USER, 60, now=T0)
    with pytest.raises(InvalidArgument) as caught:
        await p.accept_invite(token, password, now=T0)
    assert caught.value.param == "password"


async def test_sign_in_opens_a_new_session_each_time_and_it_expires() -> None:
    repo = FakeRepo()
    p = await invited(repo)
    first, user_id, expires = await p.sign_in("ann@example.com", "a good long password", "ip", T0)
    second, _, _ = await p.sign_in("ANN@example.com", "a good long password", "ip", T0)
    assert user_id == USER.id and first != second and first.startswith("wses_")
    assert expires == T0 + timedelta(hours=12)
    principal = await p.authenticate(first, now=T0)
    assert (principal.user_id, principal.team_id, principal.plan) == (USER.id, "team_1", "team")
    assert principal.key_id == "" and not principal.has_allowlist
    assert set(principal.scopes) == {"workflows:read", "workflows:write", "workflow_runs:create"}
    with pytest.raises(Unauthenticated):
        await p.authenticate(first, now=expires)


async def test_sign_out_ends_the_session() -> None:
    repo = FakeRepo()
    p = await invited(repo)
    token, _, _ = await p.sign_in(USER.email, "a good long password", "ip", T0)
    await p.sign_out(token)
    with pytest.raises(Unauthenticated):
        await p.authenticate(token, now=T0)


async def test_wrong_password_and_unknown_email_answer_alike() -> None:
    repo = FakeRepo()
    p = await invited(repo)
    for email in (USER.email, "nobody@example.com"):
        with pytest.raises(Unauthenticated) as caught:
            await p.sign_in(email, "wrong password!", "ip", T0)
        assert caught.value.message == WRONG_CREDENTIALS


async def test_failures_are_limited_per_email_then_per_ip() -> None:
    repo = FakeRepo()
    p = await invited(repo)
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await p.sign_in(USER.email, "wrong password!", "ip-a", T0)
    # Even the right password is refused while the email is over its limit...
    with pytest.raises(ResourceExhausted):
        await p.sign_in(USER.email, "a good long password", "ip-b", T0)
    # ...until the window has passed.
    later = T0 + timedelta(minutes=16)
    assert (await p.sign_in(USER.email, "a good long password", "ip-b", later))[1] == USER.id
    # One IP guessing across many emails is stopped too.
    for i in range(2):
        with pytest.raises(Unauthenticated):
            await p.sign_in(f"x{i}@example.com", "wrong password!", "ip-a", T0)
    with pytest.raises(ResourceExhausted):
        await p.sign_in("fresh@example.com", "whatever password", "ip-a", T0)


async def test_a_malformed_session_token_is_refused_without_a_lookup() -> None:
    p = people(FakeRepo())
    for token in ("", "wft_live_x", "wses_" + "x" * 200):
        with pytest.raises(Unauthenticated):
            await p.authenticate(token, now=T0)
