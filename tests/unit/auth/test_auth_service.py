"""Auth domain logic with an in-memory repository: minting, hashing, authentication."""

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.auth.repository import AuthRow, KeyRow, TeamRow, UserRow
from services.auth.service import (
    UNAUTHENTICATED_MESSAGE,
    AuthService,
    LastUsed,
    hash_token,
    new_token,
)
from weftcore.errors import InvalidArgument, NotFound, Unauthenticated

NOW = datetime(2030, 1, 1, tzinfo=UTC)


class FakeRepo:
    def __init__(self) -> None:
        self.users: dict[str, UserRow] = {}
        self.teams: dict[str, TeamRow] = {}
        self.keys: dict[str, KeyRow] = {}
        self.hashes: dict[bytes, str] = {}
        self.touched: list[dict[str, datetime]] = []

    async def create_user(self, user_id: str, email: str, plan: str) -> UserRow:
        self.users[user_id] = UserRow(user_id, email, plan, None, NOW)
        return self.users[user_id]

    async def get_user(self, user_id: str) -> UserRow:
        if user_id not in self.users:
            raise NotFound("no user")
        return self.users[user_id]

    async def set_user_plan(self, user_id: str, plan: str) -> UserRow:
        self.users[user_id] = replace(await self.get_user(user_id), plan=plan)
        return self.users[user_id]

    async def create_team(self, team_id: str, name: str, plan: str) -> TeamRow:
        self.teams[team_id] = TeamRow(team_id, name, plan, [], NOW)
        return self.teams[team_id]

    async def get_team(self, team_id: str) -> TeamRow:
        if team_id not in self.teams:
            raise NotFound("no team")
        return self.teams[team_id]

    async def set_team_plan(self, team_id: str, plan: str) -> TeamRow:
        self.teams[team_id] = replace(self.teams[team_id], plan=plan)
        return self.teams[team_id]

    async def add_member(self, team_id: str, user_id: str, role: str) -> TeamRow:
        self.users[user_id] = replace(self.users[user_id], team_id=team_id, team_role=role)
        self.teams[team_id].member_ids.append(user_id)
        self.teams[team_id].member_roles[user_id] = role
        return self.teams[team_id]

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
        key = KeyRow(
            key_id,
            user_id,
            name,
            prefix,
            list(scopes),
            has_allowlist,
            list(allowlist),
            NOW,
            expires_at,
            None,
            None,
            dict(version_pins or {}),
        )
        self.keys[key_id] = key
        self.hashes[secret_hash] = key_id
        return key

    async def list_keys(self, user_id: str) -> list[KeyRow]:
        return [k for k in self.keys.values() if k.user_id == user_id]

    async def revoke_key(self, key_id: str) -> KeyRow:
        self.keys[key_id] = replace(self.keys[key_id], revoked_at=NOW)
        return self.keys[key_id]

    async def find_by_hash(self, secret_hash: bytes) -> AuthRow | None:
        key_id = self.hashes.get(secret_hash)
        if key_id is None:
            return None
        key = self.keys[key_id]
        user = self.users[key.user_id]
        team = self.teams.get(user.team_id or "")
        return AuthRow(
            key,
            user.email,
            user.plan,
            user.team_id,
            team.plan if team else None,
            user.team_role if team else None,
        )

    async def touch_keys(self, last_used: dict[str, datetime]) -> None:
        self.touched.append(dict(last_used))


@pytest.fixture
def repo() -> FakeRepo:
    return FakeRepo()


@pytest.fixture
def service(repo: FakeRepo) -> AuthService:
    return AuthService(repo, LastUsed(repo, interval=60))


def test_tokens_are_long_random_and_hashed_with_sha256() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    token = tokens.pop()
    assert token.startswith("wft_live_") and len(token) == 9 + 43  # 256 bits
    assert hash_token(token) == hashlib.sha256(token.encode()).digest()


async def test_a_minted_key_authenticates_and_only_its_hash_is_stored(
    repo: FakeRepo, service: AuthService
) -> None:
    user = await service.create_user("a@example.com", "pro")
    key, secret = await service.create_key(
        user.id, "ci", ["workflow_runs:create", "workflows:read"], True, ["wf_1"], 0, NOW
    )
    assert list(repo.hashes) == [hash_token(secret)]
    assert secret not in repr(key)
    assert key.prefix == secret[:13]
    p = await service.authenticate(secret, NOW)
    assert (p.user_id, p.key_id, p.plan, p.team_id) == (user.id, key.id, "pro", None)
    assert p.scopes == ["workflows:read", "workflow_runs:create"]  # canonical order
    assert p.has_allowlist and p.workflow_allowlist == ["wf_1"]


async def test_team_members_get_the_team_plan(service: AuthService) -> None:
    user = await service.create_user("b@example.com", "free")
    team = await service.create_team("Acme", "enterprise")
    await service.add_member(team.id, user.id)
    _, secret = await service.create_key(user.id, "k", ["workflows:read"], False, [], 0, NOW)
    p = await service.authenticate(secret, NOW)
    assert (p.plan, p.team_id, p.team_role) == ("enterprise", team.id, "member")


async def test_members_have_a_role_on_their_team(service: AuthService) -> None:
    user = await service.create_user("v@example.com", "free")
    team = await service.create_team("Acme", "team")
    with pytest.raises(InvalidArgument) as refused:
        await service.add_member(team.id, user.id, "owner")
    assert refused.value.param == "role"
    await service.add_member(team.id, user.id, "viewer")
    _, secret = await service.create_key(user.id, "k", ["workflows:read"], False, [], 0, NOW)
    assert (await service.authenticate(secret, NOW)).team_role == "viewer"
    payer = await service.principal_for_account(user.id, team.id)
    assert (payer.team_role, payer.plan, payer.key_id) == ("viewer", "team", "")
    assert payer.scopes == ["workflow_runs:create"]
    with pytest.raises(NotFound):
        await service.principal_for_account(user.id, "team_other")


async def test_every_bad_key_raises_the_same_error(service: AuthService) -> None:
    user = await service.create_user("c@example.com", "pro")
    expiring, expiring_secret = await service.create_key(
        user.id,
        "e",
        ["workflows:read"],
        False,
        [],
        int((NOW + timedelta(hours=1)).timestamp()),
        NOW,
    )
    revoked, revoked_secret = await service.create_key(
        user.id, "r", ["workflows:read"], False, [], 0, NOW
    )
    await service.revoke_key(revoked.id)
    bad = {
        "malformed": "wft_live_abc",
        "not ours": "sk_live_" + "a" * 43,
        "unknown": "wft_live_" + "b" * 43,
        "revoked": revoked_secret,
        "expired": expiring_secret,
    }
    for name, token in bad.items():
        with pytest.raises(Unauthenticated) as info:
            await service.authenticate(token, NOW + timedelta(hours=2))
        assert info.value.message == UNAUTHENTICATED_MESSAGE, name
    # Before its expiry the expiring key works.
    assert (await service.authenticate(expiring_secret, NOW)).key_id == expiring.id


async def test_key_validation(service: AuthService) -> None:
    user = await service.create_user("d@example.com", "pro")
    past = int(NOW.timestamp()) - 1
    cases: list[tuple[str, list[str], list[str], int, str]] = [
        ("k", [], [], 0, "scopes"),
        ("k", ["admin"], [], 0, "scopes"),
        ("k", ["workflows:read"], ["run_1"], 0, "workflow_allowlist"),
        ("k", ["workflows:read"], [], past, "expires_at"),
        (" ", ["workflows:read"], [], 0, "name"),
    ]
    for name, scopes, allowlist, expires, param in cases:
        with pytest.raises(InvalidArgument) as info:
            await service.create_key(
                user.id, name, scopes, bool(allowlist), allowlist, expires, NOW
            )
        assert info.value.param == param


async def test_plans_and_emails_are_validated(service: AuthService) -> None:
    with pytest.raises(InvalidArgument):
        await service.create_user("e@example.com", "gold")
    with pytest.raises(InvalidArgument):
        await service.create_user("not-an-email", "pro")


async def test_last_use_is_batched_not_written_per_request(
    repo: FakeRepo, service: AuthService
) -> None:
    user = await service.create_user("f@example.com", "pro")
    key, secret = await service.create_key(user.id, "k", ["workflows:read"], False, [], 0, NOW)
    for i in range(50):
        await service.authenticate(secret, NOW + timedelta(seconds=i))
    assert repo.touched == []
    await service.last_used.flush()
    assert repo.touched == [{key.id: NOW + timedelta(seconds=49)}]
    await service.last_used.flush()
    assert len(repo.touched) == 1  # nothing new, no write
