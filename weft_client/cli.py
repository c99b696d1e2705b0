"""`weft`: run workflows from a shell. WEFT_API_KEY (required) and WEFT_BASE_URL.

    weft run WORKFLOW --input TEXT [--param k=v ...] [--file field=path] [--attach path]
             [--no-wait] [--timeout S]
    weft runs get RUN_ID [--wait N]      weft runs cancel RUN_ID
    weft workflows list                  weft workflows get WORKFLOW

Progress goes to stderr (stages as they start and finish, from the SSE stream, or by
long-polling when it is unavailable); the run's JSON goes to stdout.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from weft_client._async import DEFAULT_BASE_URL, TERMINAL, AsyncWeft
from weft_client.errors import WeftAPIError, WeftError

_COERCE: dict[str, Callable[[str], Any]] = {
    "integer": int,
    "number": float,
    "boolean": lambda v: {"true": True, "false": False}[v.lower()],
    "json": json.loads,
    "text": str,
}


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    return name, value


def coerce_params(
    pairs: list[tuple[str, str]], fields: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """--param values typed by the workflow's declared fields (JSON guess when unknown)."""
    types = {f["name"]: f["type"] for f in fields or []}
    out: dict[str, Any] = {}
    for name, raw in pairs:
        kind = types.get(name)
        try:
            if kind == "select":
                options = next(f for f in fields or [] if f["name"] == name)["constraints"][
                    "options"
                ]
                out[name] = next((o for o in options if str(o) == raw), raw)
            elif kind in _COERCE:
                out[name] = _COERCE[kind](raw)
            else:
                out[name] = json.loads(raw)
        except (ValueError, KeyError):
            out[name] = raw  # the server answers 400 naming the param
    return out


class Progress:
    """One line per event on stderr; stage timings from the run snapshot."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.last: str | None = None

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {text}", file=self.stream, flush=True)

    def event(self, name: str, run: dict[str, Any], stage: str | None) -> None:
        if name == "stage.started":
            self.say(f"> stage {stage or '?'} started")
        elif name == "stage.completed":
            cost = next((c for c in run.get("cost_breakdown") or [] if c["stage"] == stage), None)
            extra = f" ({cost['duration_ms']} ms, {cost['cost_cents']}c)" if cost else ""
            self.say(f"+ stage {stage or '?'} completed{extra}")
        elif name == "run.awaiting_input":
            request = run.get("human_input_request") or {}
            self.say(f"? awaiting input at {request.get('stage')}: {request.get('prompt')}")
        else:
            self.status(run)

    def status(self, run: dict[str, Any]) -> None:
        if run["status"] != self.last:
            self.last = run["status"]
            self.say(f"run {run['id']}: {run['status']}")


async def follow(
    weft: AsyncWeft, run: dict[str, Any], timeout: float, progress: Progress
) -> dict[str, Any]:
    """Follows the run to a terminal status: SSE when served, else long-polling."""
    progress.status(run)
    deadline = time.monotonic() + timeout
    try:
        async with asyncio.timeout(timeout):
            async for event in weft.runs.events(run["id"]):
                # data: {id, type, created_at, stage, data: <run snapshot>}
                data = event.get("data")
                data = data if isinstance(data, dict) else {}
                snapshot = data.get("data") if isinstance(data.get("data"), dict) else data
                stage = data.get("stage")
                if isinstance(snapshot, dict) and "status" in snapshot:
                    progress.event(event.get("event", ""), snapshot, stage)
                if event.get("event") in {"run.completed", "run.failed", "run.canceled"}:
                    break
    except (WeftError, OSError, TimeoutError) as exc:
        progress.say(f"(no event stream: {type(exc).__name__}; long-polling)")
    run = await weft.runs.get(run["id"])
    progress.status(run)
    while run["status"] not in TERMINAL:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        run = await weft.runs.get(run["id"], wait=max(1, min(30, int(left))))
        progress.status(run)
    return run


async def _run(args: argparse.Namespace, weft: AsyncWeft) -> int:
    progress = Progress(sys.stderr)
    fields = None
    if args.param:
        try:
            fields = (await weft.workflows.get(args.workflow))["fields"]
        except WeftAPIError:
            fields = None  # e.g. a key without workflows:read: guess types from JSON
    params = coerce_params(args.param, fields)
    for name, path in args.file:
        att = await weft.attachments.upload(path)
        progress.say(f"uploaded {path} -> {att['id']} ({att['kind']})")
        params[name] = att["id"]
    attachment_ids = []
    for path in args.attach:
        att = await weft.attachments.upload(path)
        progress.say(f"uploaded {path} -> {att['id']} ({att['kind']})")
        attachment_ids.append(att["id"])
    run = await weft.runs.create(
        args.workflow, args.input, params=params, attachment_ids=attachment_ids
    )
    if not args.no_wait:
        run = await follow(weft, run, args.timeout, progress)
    _print(run)
    return 0 if args.no_wait or run["status"] == "completed" else 1


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


async def _dispatch(args: argparse.Namespace) -> int:
    key = os.environ.get("WEFT_API_KEY")
    if not key:
        print("weft: set WEFT_API_KEY to your API key (wft_live_...)", file=sys.stderr)
        return 2
    async with AsyncWeft(key, os.environ.get("WEFT_BASE_URL", DEFAULT_BASE_URL)) as weft:
        if args.cmd == "run":
            return await _run(args, weft)
        if args.cmd == "runs" and args.action == "get":
            _print(await weft.runs.get(args.id, wait=args.wait))
        elif args.cmd == "runs" and args.action == "cancel":
            _print(await weft.runs.cancel(args.id))
        elif args.cmd == "runs":
            _print(await weft.runs.list(workflow_id=args.workflow, status=args.status))
        elif args.action == "list":
            _print(await weft.workflows.list(limit=100))
        else:
            _print(await weft.workflows.get(args.id))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="weft", description="Run Weft workflows.")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="upload files, start a run and wait for its result")
    run.add_argument("workflow", help="workflow id (wf_...) or slug")
    run.add_argument("--input", required=True, help="input_text")
    run.add_argument("--param", type=_pair, action="append", default=[], metavar="NAME=VALUE")
    run.add_argument(
        "--file",
        type=_pair,
        action="append",
        default=[],
        metavar="FIELD=PATH",
        help="upload PATH and bind it to the file field FIELD",
    )
    run.add_argument(
        "--attach",
        action="append",
        default=[],
        metavar="PATH",
        help="upload PATH as an extra attachment",
    )
    run.add_argument("--no-wait", action="store_true", help="print the new run and exit")
    run.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (600)")
    runs = sub.add_parser("runs", help="your runs").add_subparsers(dest="action", required=True)
    get = runs.add_parser("get")
    get.add_argument("id")
    get.add_argument("--wait", type=int, default=0, help="long-poll up to N seconds (0-60)")
    runs.add_parser("cancel").add_argument("id")
    ls = runs.add_parser("list")
    ls.add_argument("--workflow")
    ls.add_argument("--status")
    wfs = sub.add_parser("workflows", help="workflows").add_subparsers(dest="action", required=True)
    wfs.add_parser("list")
    wfs.add_parser("get").add_argument("id")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(_dispatch(args))
    except WeftAPIError as err:
        print(f"weft: {err}", file=sys.stderr)
        if err.body:
            print(json.dumps(err.body, indent=2), file=sys.stderr)
        return 1
    except (WeftError, OSError) as err:
        print(f"weft: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
