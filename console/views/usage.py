"""Usage and credits: balance, open reservations, ledger, cost per day and per workflow."""

from aiohttp import web

from console.render import render
from console.runs_data import list_runs
from console.session import require_person
from console.usage_math import bars, cost_per_day, cost_per_workflow, open_reservations
from gateway.auth import account_id
from gateway.keys import SERVICES
from weft.billing.v1 import billing_pb2

LEDGER_ROWS = 200


async def usage_page(request: web.Request) -> web.StreamResponse:
    person = await require_person(request)
    account = account_id(person.principal)
    billing = request.config_dict[SERVICES].billing
    balance = await billing.GetBalance(
        billing_pb2.GetBalanceRequest(account_id=account), timeout=10
    )
    ledger = await billing.ListLedger(
        billing_pb2.ListLedgerRequest(account_id=account, limit=LEDGER_ROWS), timeout=10
    )
    runs, _ = await list_runs(request, person.principal, "", "", "", limit=100)
    per_day = cost_per_day(ledger.entries)
    per_workflow = cost_per_workflow(runs)
    return render(
        request,
        "usage.html",
        person,
        account=account,
        balance=balance,
        ledger=ledger.entries,
        reservations=open_reservations(ledger.entries),
        per_day=per_day,
        day_bars=bars(per_day),
        per_workflow=per_workflow,
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/usage", usage_page)
