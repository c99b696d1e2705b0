"""`weft`: run Weft workflows from a shell (needs the `cli` extra: pip install 'weftapi[cli]').

Results are JSON on stdout; progress, tables' notes and errors go to stderr. Exit codes
(EXIT_* below, documented in `weft --help` and docs/clients.md): 0 done, 1 the run failed
or was canceled, 2 usage, 3 API error, 4 timed out (the run goes on), 5 cannot connect,
130 interrupted (the run goes on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from weftapi._core import DEFAULT_BASE_URL, ENV_API_KEY, ENV_BASE_URL
from weftapi._version import __version__
from weftapi.errors import WeftAPIError, WeftConnectionError, WeftError, WeftTimeoutError
from weftapi.models import Field, Run

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_TIMEOUT = 4
EXIT_CONNECTION = 5
EXIT_INTERRUPTED = 130

EPILOG = f"""\
environment:
  {ENV_API_KEY}    your API key (wft_live_...), required
  {ENV_BASE_URL}   the server (default {DEFAULT_BASE_URL})

exit codes:
  0    success (for run/follow: the run completed)
  1    the run failed or was canceled
  2    usage error (bad arguments, no API key)
  3    the API answered an error (code and request id on stderr)
  4    timed out waiting; the run continues on the server
  5    cannot connect to the server
  130  interrupted (Ctrl-C); the run continues on the server
"""


@dataclass
class State:
    """What an interruption must tell: the run that goes on without us."""

    run_id: Optional[str] = None


class Usage(Exception):
    """Bad arguments found after parsing (exit 2)."""


class RunTimedOut(Exception):
    def __init__(self, run: Run, timeout: float) -> None:
        super().__init__(run.id)
        self.run = run
        self.timeout = timeout


_COERCE: Dict[str, Callable[[str], Any]] = {
    "integer": int,
    "number": float,
    "boolean": lambda v: {"true": True, "false": False, "yes": True, "no": False}[v.lower()],
    "json": json.loads,
    "text": str,
    "file": str,
}


def coerce_values(
    pairs: Sequence[Tuple[str, str]], fields: Optional[List[Field]]
) -> Dict[str, Any]:
    """name=value pairs typed by the declared fields (a JSON guess for unknown names; a
    value that does not parse is sent as text and the server names the field)."""
    by_name = {f.name: f for f in fields or []}
    out: Dict[str, Any] = {}
    for name, raw in pairs:
        field = by_name.get(name)
        try:
            if field is not None and field.type == "select":
                out[name] = next((o for o in field.options if str(o) == raw), raw)
            elif field is not None and field.type in _COERCE:
                out[name] = _COERCE[field.type](raw)
            else:
                out[name] = json.loads(raw)
        except (ValueError, KeyError):
            out[name] = raw
    return out


def _pair(text: str) -> Tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    return name, value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="weft",
        description="Run Weft workflows and follow their runs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"weft (weftapi) {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def command(group: Any, name: str, help: str) -> argparse.ArgumentParser:
        return group.add_parser(  # type: ignore[no-any-return]
            name,
            help=help,
            description=help,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    run = command(sub, "run", "upload files, start a run and follow it to its result")
    run.add_argument("workflow", help="workflow id (wf_...)")
    run.add_argument("--input", required=True, help="the run's input_text")
    run.add_argument("--param", type=_pair, action="append", default=[], metavar="NAME=VALUE")
    run.add_argument("--file", type=_pair, action="append", default=[], metavar="FIELD=PATH",
                     help="upload PATH and bind it to the file field FIELD")  # fmt: skip
    run.add_argument("--attach", action="append", default=[], metavar="PATH",
                     help="upload PATH as an extra attachment")  # fmt: skip
    run.add_argument("--no-wait", action="store_true", help="print the new run and exit")
    run.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (600)")

    runs = command(sub, "runs", "your runs").add_subparsers(dest="action", required=True)
    get = command(runs, "get", "a run (a waiting run shows what it asks for)")
    get.add_argument("id")
    get.add_argument("--wait", type=int, default=0, help="long-poll up to N seconds (0-60)")
    fol = command(runs, "follow", "follow a run live until it ends")
    fol.add_argument("id")
    fol.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (600)")
    command(runs, "cancel", "cancel a pending, running or waiting run").add_argument("id")
    inp = command(runs, "input", "answer a run that awaits input: weft runs input RUN k=v ...")
    inp.add_argument("id")
    inp.add_argument("values", nargs="+", type=_pair, metavar="FIELD=VALUE")
    inp.add_argument("--follow", action="store_true", help="then follow the run to its end")
    inp.add_argument("--timeout", type=float, default=600.0, help="with --follow (600)")
    ls = command(runs, "list", "your runs, newest first (a table; --json for JSON)")
    ls.add_argument("--workflow")
    ls.add_argument("--status")
    ls.add_argument("--limit", type=int, default=20, help="at most N runs (20)")
    ls.add_argument("--json", action="store_true")

    wfs = command(sub, "workflows", "workflows").add_subparsers(dest="action", required=True)
    wls = command(wfs, "list", "the workflows your key may run (a table; --json for JSON)")
    wls.add_argument("--json", action="store_true")
    command(wfs, "get", "a workflow with its fields and stages").add_argument("id")
    command(sub, "me", "the account and key behind WEFT_API_KEY")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    try:
        from weftapi.cli import _commands
    except ImportError as exc:  # rich missing
        print(f"weft: {exc.name} is missing: pip install 'weftapi[cli]'", file=sys.stderr)
        return EXIT_USAGE
    args = parser().parse_args(argv)
    state = State()
    try:
        return asyncio.run(_commands.dispatch(args, state))
    except KeyboardInterrupt:
        if state.run_id:
            print(
                f"\nweft: interrupted; run {state.run_id} continues on the server. "
                f"Follow it: weft runs follow {state.run_id}  Cancel it: "
                f"weft runs cancel {state.run_id}",
                file=sys.stderr,
            )
        else:
            print("\nweft: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Usage as exc:
        print(f"weft: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RunTimedOut as exc:
        _commands.print_run(exc.run)
        print(
            f"weft: timed out after {exc.timeout:g}s; run {exc.run.id} is {exc.run.status} "
            f"and continues on the server. Follow it: weft runs follow {exc.run.id}  "
            f"Cancel it: weft runs cancel {exc.run.id}",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    except WeftAPIError as exc:
        print(f"weft: {exc}", file=sys.stderr)
        return EXIT_API_ERROR
    except WeftConnectionError as exc:
        print(f"weft: {exc}", file=sys.stderr)
        return EXIT_CONNECTION
    except WeftTimeoutError as exc:
        print(f"weft: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except (WeftError, OSError) as exc:
        print(f"weft: {exc}", file=sys.stderr)
        return EXIT_USAGE
