"""`weft-admin <group> <command> ...`: each command module registers its own subcommands.

A command is an async function `(args, clients) -> None` stored as `args.run`; output is
JSON on stdout so scripts can read it; errors print the public code and exit 1.
"""

import argparse
import asyncio
import json
import os
import sys
from types import ModuleType

import grpc

from admin import clients
from weftcore.errors import WeftError, from_rpc_error

COMMAND_MODULES: list[ModuleType] = []


def _load_modules() -> list[ModuleType]:
    # Imported lazily so one broken module names itself instead of breaking the CLI.
    import importlib

    found = []
    for name in ("accounts", "billing", "workflows", "webhooks"):
        try:
            found.append(importlib.import_module(f"admin.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"admin.{name}":
                raise
    return found


DESCRIPTION = """\
Operates a Weft installation over gRPC: accounts, keys, credits, prices, workflows and
webhooks. Prints JSON on stdout; an error prints its public code on stderr and exits 1.
The services are found at WEFT_AUTH_ADDR, WEFT_RUNS_ADDR, WEFT_STORAGE_ADDR and
WEFT_BILLING_ADDR (the dev stack's defaults need no setting)."""
EXAMPLES = """\
examples (`weft-admin GROUP --help` lists a group's commands):
  weft-admin users create --email ann@example.com --plan pro
  weft-admin teams create --name Acme --plan team
  weft-admin keys create --user usr_... --name n8n --scopes workflows:read
  weft-admin credits grant --account usr_... --amount-usd 20
  weft-admin prices list
  weft-admin allocations set --team team_... --user usr_... --monthly-usd 50
  weft-admin workflows apply workflows/*.yaml
  weft-admin webhooks deliveries --run run_..."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weft-admin",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = parser.add_subparsers(dest="group", required=True)
    for module in COMMAND_MODULES or _load_modules():
        module.register(groups)
    return parser


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


async def _run(args: argparse.Namespace) -> int:
    conn = clients.connect()
    try:
        await args.run(args, conn)
        return 0
    except (grpc.RpcError, WeftError) as exc:
        err = exc if isinstance(exc, WeftError) else from_rpc_error(exc)
        print(f"error: {err.code}: {err.message}", file=sys.stderr)
        return 1
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        status = asyncio.run(_run(args))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`weft-admin ... | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 0
    raise SystemExit(status)


if __name__ == "__main__":
    main()
