"""The demo account of the dev stack: a pro user with credits and an API key.

The key's secret is shown once by the auth service, so it is kept in `.weft/demo.json`
(mode 600) and reused while it still authenticates.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from weft.auth.v1 import auth_pb2, auth_pb2_grpc
from weft.billing.v1 import billing_pb2, billing_pb2_grpc

DEMO_EMAIL = "demo@weft.local"
DEMO_CREDITS_MICROS = 50 * 1_000_000  # $50
SCOPES = ["workflows:read", "workflows:write", "workflow_runs:create"]


@dataclass(frozen=True)
class Demo:
    user_id: str
    key_id: str
    token: str


async def ensure_demo(auth_addr: str, billing_addr: str, state_file: Path) -> Demo:
    async with (
        grpc.aio.insecure_channel(auth_addr) as auth_channel,
        grpc.aio.insecure_channel(billing_addr) as billing_channel,
    ):
        auth = auth_pb2_grpc.AuthServiceStub(auth_channel)
        if state_file.exists():
            saved = json.loads(state_file.read_text())
            try:
                await auth.Authenticate(auth_pb2.AuthenticateRequest(token=saved["token"]))
                return Demo(**saved)
            except grpc.RpcError:
                pass  # revoked, or a fresh database: make a new account below
        user = await auth.CreateUser(auth_pb2.CreateUserRequest(email=DEMO_EMAIL, plan="pro"))
        created = await auth.CreateKey(
            auth_pb2.CreateKeyRequest(user_id=user.id, name="demo", scopes=SCOPES)
        )
        billing = billing_pb2_grpc.BillingServiceStub(billing_channel)
        await billing.Grant(
            billing_pb2.GrantRequest(
                account_id=user.id, amount_micros=DEMO_CREDITS_MICROS, note="dev stack demo"
            )
        )
    demo = Demo(user_id=user.id, key_id=created.key.id, token=created.secret)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(demo.__dict__, f)
    return demo


def curl_line(base_url: str, token: str) -> str:
    body = json.dumps(
        {
            "input_text": "Summarise this timesheet.",
            "params": {"csv": "name,project,hours\nAnn,Apollo,3\nBob,Apollo,4.5\nAnn,Zeus,2"},
        }
    )
    return (
        f"curl -s -X POST {base_url}/api/v1/workflows/wf_timesheet_summary/runs \\\n"
        f"  -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}'"
    )


async def demo_invite(auth_addr: str, base_url: str) -> str:
    """A one-time console link where the demo user sets (or resets) a password."""
    async with grpc.aio.insecure_channel(auth_addr) as channel:
        invite = await auth_pb2_grpc.AuthServiceStub(channel).CreateInvite(
            auth_pb2.CreateInviteRequest(email=DEMO_EMAIL)
        )
    return f"{base_url.rstrip('/')}/app/invite/{invite.token}"
