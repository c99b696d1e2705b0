"""`weft-admin credits|prices|allocations ...`: credits, the price table, team allocations.

Dollar amounts are parsed with Decimal into integer micro-dollars; output shows both the
exact micros and a dollar string.
"""

import argparse
from typing import Any

from admin.clients import AdminClients
from services.billing.money import MoneyError, format_usd_exact, parse_usd
from weft.auth.v1 import auth_pb2
from weft.billing.v1 import billing_pb2 as pb
from weftcore.errors import NotFound


def _usd(text: str) -> int:
    try:
        return parse_usd(text)
    except MoneyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _usd_positive(text: str) -> int:
    micros = _usd(text)
    if micros <= 0:
        raise argparse.ArgumentTypeError(f"amount must be > 0: {text!r}")
    return micros


def _balance(b: pb.Balance) -> dict[str, Any]:
    return {
        "account_id": b.account_id,
        "balance_micros": b.balance_micros,
        "reserved_micros": b.reserved_micros,
        "available_micros": b.available_micros,
        "balance_usd": format_usd_exact(b.balance_micros),
        "available_usd": format_usd_exact(b.available_micros),
    }


def _price(p: pb.Price) -> dict[str, Any]:
    return {
        "model": p.model,
        "input_micros_per_mtok": p.input_micros_per_mtok,
        "output_micros_per_mtok": p.output_micros_per_mtok,
        "input_usd_per_mtok": format_usd_exact(p.input_micros_per_mtok),
        "output_usd_per_mtok": format_usd_exact(p.output_micros_per_mtok),
    }


async def credits_grant(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    # Credits for an account that does not exist would sit where no key can spend them.
    account = args.account
    if account.startswith("usr_"):
        await clients.auth.GetUser(auth_pb2.GetUserRequest(user_id=account), timeout=10)
    elif account.startswith("team_"):
        await clients.auth.GetTeam(auth_pb2.GetTeamRequest(team_id=account), timeout=10)
    else:
        raise NotFound(f"No such account: {account} (a usr_... or team_... id).")
    reply = await clients.billing.Grant(
        pb.GrantRequest(account_id=args.account, amount_micros=args.amount_usd, note=args.note)
    )
    print_json(_balance(reply))


async def credits_balance(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    print_json(
        _balance(await clients.billing.GetBalance(pb.GetBalanceRequest(account_id=args.account)))
    )


async def credits_ledger(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    reply = await clients.billing.ListLedger(
        pb.ListLedgerRequest(account_id=args.account, limit=args.limit)
    )
    print_json(
        [
            {
                "id": e.id,
                "kind": e.kind,
                "amount_micros": e.amount_micros,
                "amount_usd": format_usd_exact(e.amount_micros),
                "run_id": e.run_id or None,
                "user_id": e.user_id or None,
                "note": e.note,
                "created_at": e.created_at,
            }
            for e in reply.entries
        ]
    )


async def credits_check(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    reply = await clients.billing.CheckLedger(pb.CheckLedgerRequest())
    print_json(
        {
            "ok": reply.ok,
            "mismatches": [
                {
                    "account_id": m.account_id,
                    "cached_balance_micros": m.cached_balance_micros,
                    "ledger_balance_micros": m.ledger_balance_micros,
                    "cached_reserved_micros": m.cached_reserved_micros,
                    "ledger_reserved_micros": m.ledger_reserved_micros,
                }
                for m in reply.mismatches
            ],
        }
    )
    if not reply.ok:
        raise SystemExit(1)


async def prices_set(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    price = pb.Price(
        model=args.model,
        input_micros_per_mtok=args.input_usd_per_mtok,
        output_micros_per_mtok=args.output_usd_per_mtok,
    )
    print_json(_price(await clients.billing.SetPrice(pb.SetPriceRequest(price=price))))


async def prices_list(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    reply = await clients.billing.ListPrices(pb.ListPricesRequest())
    print_json([_price(p) for p in reply.prices])


async def allocations_set(args: argparse.Namespace, clients: AdminClients) -> None:
    from admin.__main__ import print_json

    reply = await clients.billing.SetAllocation(
        pb.SetAllocationRequest(
            team_id=args.team, user_id=args.user, monthly_micros=args.monthly_usd
        )
    )
    print_json(
        {
            "team_id": reply.team_id,
            "user_id": reply.user_id,
            "monthly_micros": reply.monthly_micros,
            "monthly_usd": format_usd_exact(reply.monthly_micros),
            "spent_this_month_micros": reply.spent_this_month_micros,
        }
    )


def register(groups: Any) -> None:
    """Adds the `credits`, `prices` and `allocations` command groups."""
    credits = groups.add_parser("credits", help="account credits and the ledger")
    cmds = credits.add_subparsers(dest="command", required=True)
    p = cmds.add_parser("grant", help="add credits to a user or team account")
    p.add_argument("--account", required=True, help="usr_... or team_...")
    p.add_argument("--amount-usd", required=True, type=_usd_positive, help="e.g. 25.00")
    p.add_argument("--note", default="", help="why (kept in the ledger)")
    p.set_defaults(run=credits_grant)
    p = cmds.add_parser("balance", help="balance, reserved and available credits")
    p.add_argument("--account", required=True)
    p.set_defaults(run=credits_balance)
    p = cmds.add_parser("ledger", help="ledger entries, newest first")
    p.add_argument("--account", required=True)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(run=credits_ledger)
    p = cmds.add_parser("check", help="prove cached balances equal the ledger (exit 1 if not)")
    p.set_defaults(run=credits_check)

    prices = groups.add_parser("prices", help="the per-model price table")
    cmds = prices.add_subparsers(dest="command", required=True)
    p = cmds.add_parser("set", help="set a model's price per million tokens")
    p.add_argument("--model", required=True, help="<provider>:<model>")
    p.add_argument("--input-usd-per-mtok", required=True, type=_usd)
    p.add_argument("--output-usd-per-mtok", required=True, type=_usd)
    p.set_defaults(run=prices_set)
    p = cmds.add_parser("list", help="every priced model")
    p.set_defaults(run=prices_list)

    allocations = groups.add_parser("allocations", help="team members' monthly allocations")
    cmds = allocations.add_subparsers(dest="command", required=True)
    p = cmds.add_parser("set", help="set a member's monthly allocation")
    p.add_argument("--team", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--monthly-usd", required=True, type=_usd)
    p.set_defaults(run=allocations_set)
