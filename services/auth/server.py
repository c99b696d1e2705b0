"""gRPC surface of the auth service: wiring and the servicer (gRPC <-> domain)."""

from contextlib import AsyncExitStack
from typing import Any

from services.auth.people import People, PeopleConfig
from services.auth.people_repository import PeopleRepository
from services.auth.pruning import prune_forever
from services.auth.repository import AuthRepository, KeyRow, TeamRow, UserRow
from services.auth.service import AuthService, LastUsed, Principal
from weft.auth.v1 import auth_pb2, auth_pb2_grpc
from weftcore.background import BackgroundTasks
from weftcore.config import ServiceConfig, env_float, env_int
from weftcore.db import create_pool, ping
from weftcore.grpc_server import GrpcServer
from weftcore.ids import iso
from weftcore.service import Check

GRPC_SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name

Ctx = Any  # grpc.aio.ServicerContext


def principal_pb(p: Principal) -> auth_pb2.Principal:
    return auth_pb2.Principal(
        user_id=p.user_id,
        email=p.email,
        plan=p.plan,
        team_id=p.team_id or "",
        key_id=p.key_id,
        key_name=p.key_name,
        scopes=p.scopes,
        has_allowlist=p.has_allowlist,
        workflow_allowlist=p.workflow_allowlist,
        expires_at_unix=int(p.expires_at.timestamp()) if p.expires_at else 0,
        version_pins=p.version_pins,
        team_role=p.team_role or "",
    )


def user_pb(u: UserRow) -> auth_pb2.User:
    return auth_pb2.User(
        id=u.id,
        email=u.email,
        plan=u.plan,
        team_id=u.team_id or "",
        created_at=iso(u.created_at),
        team_role=u.team_role or "",
    )


def team_pb(t: TeamRow) -> auth_pb2.Team:
    return auth_pb2.Team(
        id=t.id,
        name=t.name,
        plan=t.plan,
        member_ids=t.member_ids,
        created_at=iso(t.created_at),
        member_roles=t.member_roles,
    )


def key_pb(k: KeyRow) -> auth_pb2.ApiKey:
    return auth_pb2.ApiKey(
        id=k.id,
        user_id=k.user_id,
        name=k.name,
        scopes=k.scopes,
        has_allowlist=k.has_allowlist,
        workflow_allowlist=k.workflow_allowlist,
        created_at=iso(k.created_at),
        expires_at=iso(k.expires_at),
        revoked_at=iso(k.revoked_at),
        last_used_at=iso(k.last_used_at),
        prefix=k.prefix,
        version_pins=k.version_pins,
    )


class AuthServiceServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, service: AuthService, people: People, people_repo: PeopleRepository) -> None:
        self.service = service
        self.people = people
        self.people_repo = people_repo

    async def Authenticate(self, request: auth_pb2.AuthenticateRequest, context: Ctx) -> Any:
        return principal_pb(await self.service.authenticate(request.token))

    async def PrincipalForAccount(
        self, request: auth_pb2.PrincipalForAccountRequest, context: Ctx
    ) -> Any:
        return principal_pb(
            await self.service.principal_for_account(request.user_id, request.team_id)
        )

    async def CreateUser(self, request: auth_pb2.CreateUserRequest, context: Ctx) -> Any:
        return user_pb(await self.service.create_user(request.email, request.plan))

    async def GetUser(self, request: auth_pb2.GetUserRequest, context: Ctx) -> Any:
        return user_pb(await self.service.get_user(request.user_id))

    async def GetTeam(self, request: auth_pb2.GetTeamRequest, context: Ctx) -> Any:
        return team_pb(await self.service.get_team(request.team_id))

    async def SetUserPlan(self, request: auth_pb2.SetUserPlanRequest, context: Ctx) -> Any:
        return user_pb(await self.service.set_user_plan(request.user_id, request.plan))

    async def CreateTeam(self, request: auth_pb2.CreateTeamRequest, context: Ctx) -> Any:
        return team_pb(await self.service.create_team(request.name, request.plan))

    async def SetTeamPlan(self, request: auth_pb2.SetTeamPlanRequest, context: Ctx) -> Any:
        return team_pb(await self.service.set_team_plan(request.team_id, request.plan))

    async def AddMember(self, request: auth_pb2.AddMemberRequest, context: Ctx) -> Any:
        return team_pb(
            await self.service.add_member(request.team_id, request.user_id, request.role)
        )

    async def CreateKey(self, request: auth_pb2.CreateKeyRequest, context: Ctx) -> Any:
        key, secret = await self.service.create_key(
            request.user_id,
            request.name,
            list(request.scopes),
            request.has_allowlist,
            list(request.workflow_allowlist),
            request.expires_at_unix,
            version_pins=dict(request.version_pins),
        )
        return auth_pb2.CreateKeyResponse(key=key_pb(key), secret=secret)

    async def ListKeys(self, request: auth_pb2.ListKeysRequest, context: Ctx) -> Any:
        keys = await self.service.list_keys(request.user_id)
        return auth_pb2.ListKeysResponse(keys=[key_pb(k) for k in keys])

    async def RevokeKey(self, request: auth_pb2.RevokeKeyRequest, context: Ctx) -> Any:
        return key_pb(await self.service.revoke_key(request.key_id))

    async def CreateInvite(self, request: auth_pb2.CreateInviteRequest, context: Ctx) -> Any:
        user = await self.people_repo.user_by_email(request.email.strip())
        if user is None:
            user = await self.service.create_user(request.email, request.plan)
        token, expires_at = await self.people.invite(user, request.ttl_seconds)
        return auth_pb2.Invite(
            token=token, user_id=user.id, email=user.email, expires_at=iso(expires_at)
        )

    async def AcceptInvite(self, request: auth_pb2.AcceptInviteRequest, context: Ctx) -> Any:
        user_id = await self.people.accept_invite(request.token, request.password)
        return user_pb(await self.service.get_user(user_id))

    async def SignIn(self, request: auth_pb2.SignInRequest, context: Ctx) -> Any:
        token, user_id, expires_at = await self.people.sign_in(
            request.email, request.password, request.client_ip
        )
        return auth_pb2.Session(
            token=token, user_id=user_id, expires_at_unix=int(expires_at.timestamp())
        )

    async def AuthenticateSession(
        self, request: auth_pb2.AuthenticateSessionRequest, context: Ctx
    ) -> Any:
        return principal_pb(await self.people.authenticate(request.token))

    async def SignOut(self, request: auth_pb2.SignOutRequest, context: Ctx) -> Any:
        await self.people.sign_out(request.token)
        return auth_pb2.SignOutResponse()


def people_config() -> PeopleConfig:
    return PeopleConfig(
        invite_seconds=env_int("WEFT_INVITE_SECONDS", 72 * 3600),
        session_seconds=env_int("WEFT_SESSION_SECONDS", 12 * 3600),
        failure_window_seconds=env_int("WEFT_LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60),
        max_failures_per_email=env_int("WEFT_LOGIN_MAX_FAILURES_PER_EMAIL", 5),
        max_failures_per_ip=env_int("WEFT_LOGIN_MAX_FAILURES_PER_IP", 30),
    )


async def wire(
    config: ServiceConfig, server: GrpcServer, stack: AsyncExitStack
) -> dict[str, Check]:
    pool = await create_pool(config.database_url, "auth")
    stack.push_async_callback(pool.close)
    repo = AuthRepository(pool)
    last_used = LastUsed(repo, env_float("WEFT_AUTH_LAST_USED_FLUSH_SECONDS", 5.0))
    tasks = BackgroundTasks()
    # Registered after the pool, so it closes first: the final flush still has a pool.
    stack.push_async_callback(tasks.close)
    tasks.start("last-used-flusher", last_used.run)
    people_repo = PeopleRepository(pool)
    config_people = people_config()
    tasks.start("people-pruner", lambda: prune_forever(people_repo, config_people))
    servicer = AuthServiceServicer(
        AuthService(repo, last_used), People(people_repo, config_people), people_repo
    )
    auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server.server)  # type: ignore[arg-type]

    async def database() -> bool:
        return await ping(pool)

    return {"database": database}
