"""`weft-admin webhooks deliveries --run RUN_ID | secret --account ID`.

`deliveries` lists a run's webhook deliveries (one per event, `id` = the event id the
receiver sees) with every attempt; `secret` prints the account's signing secret
(created on first use) for receivers to verify `Weft-Signature`.
"""

import argparse
from typing import Any

from google.protobuf.json_format import MessageToDict

from admin.clients import AdminClients
from weft.runs.v1 import runs_pb2 as pb


def _delivery(d: pb.WebhookDelivery) -> dict[str, Any]:
    data = MessageToDict(
        d, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return data


async def deliveries(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    reply = await clients.runs.ListWebhookDeliveries(
        pb.ListWebhookDeliveriesRequest(run_id=args.run_id), timeout=10
    )
    print_json([_delivery(d) for d in reply.deliveries])


async def secret(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    reply = await clients.runs.GetWebhookSecret(
        pb.GetWebhookSecretRequest(account_id=args.account), timeout=10
    )
    print_json(
        {"account_id": reply.account_id, "secret": reply.secret, "created_at": reply.created_at}
    )


def register(groups: Any) -> None:
    """Adds the `webhooks` command group."""
    wh = groups.add_parser("webhooks", help="webhook deliveries and signing secrets")
    cmds = wh.add_subparsers(dest="command", required=True)
    p = cmds.add_parser("deliveries", help="a run's webhook deliveries and their attempts")
    p.add_argument("--run", dest="run_id", required=True, metavar="RUN_ID")
    p.set_defaults(run=deliveries)
    p = cmds.add_parser("secret", help="the account's webhook signing secret")
    p.add_argument("--account", required=True, metavar="ID", help="team id or user id")
    p.set_defaults(run=secret)
