"""`weft-admin users|teams|keys ...`: accounts, plans and API keys over the auth gRPC API."""

import argparse
import time
from typing import Any

from admin.__main__ import print_json
from admin.clients import AdminClients
from weft.auth.v1 import auth_pb2
from weftcore.config import env_str
from weftcore.plans import PLANS

SCOPES = ("workflows:read", "workflows:write", "workflow_runs:create")


def user_json(u: auth_pb2.User) -> dict[str, Any]:
    return {
        "id": u.id,
        "email": u.email,
        "plan": u.plan,
        "team_id": u.team_id or None,
        "created_at": u.created_at,
    }


def team_json(t: auth_pb2.Team) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "plan": t.plan,
        "member_ids": list(t.member_ids),
        "member_roles": dict(t.member_roles),
        "created_at": t.created_at,
    }


def key_json(k: auth_pb2.ApiKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "user_id": k.user_id,
        "name": k.name,
        "prefix": k.prefix,
        "scopes": list(k.scopes),
        "workflow_allowlist": list(k.workflow_allowlist) if k.has_allowlist else None,
        "version_pins": dict(k.version_pins),
        "created_at": k.created_at,
        "expires_at": k.expires_at or None,
        "revoked_at": k.revoked_at or None,
        "last_used_at": k.last_used_at or None,
    }


async def users_create(args: argparse.Namespace, clients: AdminClients) -> None:
    user = await clients.auth.CreateUser(
        auth_pb2.CreateUserRequest(email=args.email, plan=args.plan), timeout=10
    )
    print_json(user_json(user))


async def users_get(args: argparse.Namespace, clients: AdminClients) -> None:
    user = await clients.auth.GetUser(auth_pb2.GetUserRequest(user_id=args.user), timeout=10)
    print_json(user_json(user))


async def users_set_plan(args: argparse.Namespace, clients: AdminClients) -> None:
    user = await clients.auth.SetUserPlan(
        auth_pb2.SetUserPlanRequest(user_id=args.user, plan=args.plan), timeout=10
    )
    print_json(user_json(user))


async def users_invite(args: argparse.Namespace, clients: AdminClients) -> None:
    invite = await clients.auth.CreateInvite(
        auth_pb2.CreateInviteRequest(
            email=args.email, plan=args.plan, ttl_seconds=int(args.expires_in_hours * 3600)
        ),
        timeout=10,
    )
    base = env_str("WEFT_PUBLIC_BASE_URL", "http://127.0.0.1:8080").rstrip("/")
    # The only time the link is shown: the invite is stored as a hash.
    print_json(
        {
            "user_id": invite.user_id,
            "email": invite.email,
            "invite_url": f"{base}/app/invite/{invite.token}",
            "expires_at": invite.expires_at,
        }
    )


async def teams_create(args: argparse.Namespace, clients: AdminClients) -> None:
    team = await clients.auth.CreateTeam(
        auth_pb2.CreateTeamRequest(name=args.name, plan=args.plan), timeout=10
    )
    print_json(team_json(team))


async def teams_set_plan(args: argparse.Namespace, clients: AdminClients) -> None:
    team = await clients.auth.SetTeamPlan(
        auth_pb2.SetTeamPlanRequest(team_id=args.team, plan=args.plan), timeout=10
    )
    print_json(team_json(team))


async def teams_add_member(args: argparse.Namespace, clients: AdminClients) -> None:
    team = await clients.auth.AddMember(
        auth_pb2.AddMemberRequest(team_id=args.team, user_id=args.user, role=args.role),
        timeout=10,
    )
    print_json(team_json(team))


async def keys_create(args: argparse.Namespace, clients: AdminClients) -> None:
    expires = int(time.time() + args.expires_in_days * 86400) if args.expires_in_days else 0
    allowlist = [w for item in args.allowlist or [] for w in item.split(",") if w]
    reply = await clients.auth.CreateKey(
        auth_pb2.CreateKeyRequest(
            user_id=args.user,
            name=args.name,
            scopes=[s for item in args.scopes for s in item.split(",") if s],
            has_allowlist=args.allowlist is not None,
            workflow_allowlist=allowlist,
            expires_at_unix=expires,
            version_pins=dict(args.pin or []),
        ),
        timeout=10,
    )
    # The only time the secret is ever shown: it is stored as a hash.
    print_json({**key_json(reply.key), "secret": reply.secret})


async def keys_list(args: argparse.Namespace, clients: AdminClients) -> None:
    reply = await clients.auth.ListKeys(auth_pb2.ListKeysRequest(user_id=args.user), timeout=10)
    print_json([key_json(k) for k in reply.keys])


async def keys_revoke(args: argparse.Namespace, clients: AdminClients) -> None:
    key = await clients.auth.RevokeKey(auth_pb2.RevokeKeyRequest(key_id=args.key), timeout=10)
    print_json(key_json(key))


def _pin(raw: str) -> tuple[str, int]:
    """`wf_...=3`: the version the key's runs of that workflow use."""
    workflow_id, _, version = raw.partition("=")
    if not workflow_id or not version.isdigit():
        raise argparse.ArgumentTypeError(f"--pin takes WORKFLOW_ID=VERSION, not {raw!r}")
    return workflow_id, int(version)


def _hours(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 24 * 30:
        raise argparse.ArgumentTypeError("must be a number of hours, at most 720")
    return value


def _days(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of days")
    return value


def register(groups: Any) -> None:
    """Adds the `users`, `teams` and `keys` command groups."""
    users = groups.add_parser("users", help="users and their plans").add_subparsers(
        dest="command", required=True
    )
    p = users.add_parser("create", help="create a user")
    p.add_argument("--email", required=True)
    p.add_argument("--plan", choices=PLANS, default="free")
    p.set_defaults(run=users_create)
    p = users.add_parser("get", help="show a user")
    p.add_argument("--user", required=True, help="usr_...")
    p.set_defaults(run=users_get)
    p = users.add_parser("set-plan", help="change a user's own plan")
    p.add_argument("--user", required=True, help="usr_...")
    p.add_argument("--plan", choices=PLANS, required=True)
    p.set_defaults(run=users_set_plan)
    p = users.add_parser(
        "invite", help="print a one-time console link where the person sets a password"
    )
    p.add_argument("--email", required=True)
    p.add_argument("--plan", choices=PLANS, default="free", help="for a new user only")
    p.add_argument("--expires-in-hours", type=_hours, default=72.0)
    p.set_defaults(run=users_invite)

    teams = groups.add_parser("teams", help="teams and memberships").add_subparsers(
        dest="command", required=True
    )
    p = teams.add_parser("create", help="create a team")
    p.add_argument("--name", required=True)
    p.add_argument("--plan", choices=PLANS, default="team")
    p.set_defaults(run=teams_create)
    p = teams.add_parser("set-plan", help="change a team's plan")
    p.add_argument("--team", required=True, help="team_...")
    p.add_argument("--plan", choices=PLANS, required=True)
    p.set_defaults(run=teams_set_plan)
    p = teams.add_parser(
        "add-member", help="put a user on a team (its plan applies), or change their role"
    )
    p.add_argument("--team", required=True, help="team_...")
    p.add_argument("--user", required=True, help="usr_...")
    p.add_argument(
        "--role",
        choices=("admin", "member", "viewer"),
        default="member",
        help="admin: also archives the team's workflows; member: builds, publishes and runs"
        " them (default); viewer: reads and runs them",
    )
    p.set_defaults(run=teams_add_member)

    keys = groups.add_parser("keys", help="API keys").add_subparsers(dest="command", required=True)
    p = keys.add_parser("create", help="create a key and print its secret (shown once)")
    p.add_argument("--user", required=True, help="usr_... (the key's owner)")
    p.add_argument("--name", required=True)
    p.add_argument(
        "--scopes",
        nargs="+",
        default=list(SCOPES),
        help=f"any of {' '.join(SCOPES)} (space or comma separated; default: all)",
    )
    p.add_argument(
        "--allowlist",
        nargs="*",
        default=None,
        help="only these workflows (wf_...); given without ids: no workflow at all",
    )
    p.add_argument("--expires-in-days", type=_days, default=None)
    p.add_argument(
        "--pin",
        action="append",
        type=_pin,
        metavar="WF=N",
        help="run version N of workflow WF unless a call names one (repeatable)",
    )
    p.set_defaults(run=keys_create)
    p = keys.add_parser("list", help="a user's keys (never their secrets)")
    p.add_argument("--user", required=True, help="usr_...")
    p.set_defaults(run=keys_list)
    p = keys.add_parser("revoke", help="revoke a key")
    p.add_argument("--key", required=True, help="key_...")
    p.set_defaults(run=keys_revoke)
