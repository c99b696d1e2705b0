"""The `weft` subcommands, on the async client (so a wait can be bounded while events
stream). Errors propagate to `main`, which maps them to exit codes."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, Callable, Dict, List, Optional

from weftapi import AsyncWeft, Run, WeftAPIError
from weftapi.cli import EXIT_OK, EXIT_RUN_FAILED, RunTimedOut, State, Usage, coerce_values
from weftapi.cli._follow import Progress, follow
from weftapi.cli._render import console, print_json, request_panel, table
from weftapi.errors import WeftError
from weftapi.models import Field


def print_run(run: Run) -> None:
    print_json(run)


def _cents(value: Any) -> str:
    return "" if value is None else f"{value}c"


def _when(value: Any) -> str:
    """2026-12-07T20:20:18.109Z -> 2026-12-07 20:20:18 (UTC, as the API gives it)."""
    return "" if not value else str(value)[:19].replace("T", " ")


async def _follow_bounded(weft: AsyncWeft, run: Run, timeout: float) -> int:
    progress = Progress(console(stderr=True))
    try:
        done = await asyncio.wait_for(follow(weft, run, progress), timeout)
    except asyncio.TimeoutError:
        progress.stop()
        last = await weft.runs.get(run.id)
        if not last.done:
            raise RunTimedOut(last, timeout) from None
        done = last
    finally:
        progress.stop()
    print_run(done)
    if done.status == "failed" and done.error is not None:
        stage = f" at stage {done.error.stage}" if done.error.stage else ""
        console(stderr=True).print(
            f"run {done.id} failed{stage}: {done.error.code}: {done.error.message}", markup=False
        )
    return EXIT_OK if done.status == "completed" else EXIT_RUN_FAILED


async def _fields(weft: AsyncWeft, workflow_id: str) -> Optional[List[Field]]:
    try:
        return (await weft.workflows.get(workflow_id)).fields
    except WeftAPIError:
        return None  # e.g. a key without workflows:read: guess the types from JSON


async def cmd_run(args: argparse.Namespace, weft: AsyncWeft, state: State) -> int:
    err = console(stderr=True)
    params: Dict[str, Any] = {}
    if args.param:
        params = coerce_values(args.param, await _fields(weft, args.workflow))
    for name, path in args.file:
        att = await weft.attachments.upload(path)
        err.print(f"uploaded {path} -> {att.id} ({att.kind})", markup=False)
        params[name] = att.id
    attachment_ids = []
    for path in args.attach:
        att = await weft.attachments.upload(path)
        err.print(f"uploaded {path} -> {att.id} ({att.kind})", markup=False)
        attachment_ids.append(att.id)
    run = await weft.runs.create(
        args.workflow, args.input, params=params, attachment_ids=attachment_ids
    )
    state.run_id = run.id
    if args.no_wait:
        print_run(run)
        return EXIT_OK
    return await _follow_bounded(weft, run, args.timeout)


async def cmd_runs(args: argparse.Namespace, weft: AsyncWeft, state: State) -> int:
    if args.action == "get":
        run = await weft.runs.get(args.id, wait=args.wait)
        print_run(run)
        if run.status == "awaiting_input" and run.human_input_request is not None:
            console(stderr=True).print(request_panel(run))
    elif args.action == "follow":
        state.run_id = args.id
        return await _follow_bounded(weft, await weft.runs.get(args.id), args.timeout)
    elif args.action == "cancel":
        print_run(await weft.runs.cancel(args.id))
    elif args.action == "input":
        current = await weft.runs.get(args.id)
        request = current.human_input_request
        values = coerce_values(args.values, request.fields if request else None)
        run = await weft.runs.submit_input(args.id, values)
        if not args.follow:
            print_run(run)
            return EXIT_OK
        state.run_id = run.id
        return await _follow_bounded(weft, run, args.timeout)
    else:
        if not 1 <= args.limit <= 10_000:
            raise Usage("--limit must be between 1 and 10000")
        runs: List[Run] = []
        async for r in weft.runs.list(
            workflow_id=args.workflow, status=args.status, limit=min(args.limit, 100)
        ):
            runs.append(r)
            if len(runs) >= args.limit:
                break
        if args.json:
            print_json(runs)
        else:
            columns = ["id", "workflow_id", "status", "cost_cents", "created_at"]
            out = console(stderr=False)
            formats: Dict[str, Callable[[Any], str]] = {"cost_cents": _cents, "created_at": _when}
            headers = {"workflow_id": "workflow", "cost_cents": "cost", "created_at": "created"}
            out.print(table(runs, columns, formats=formats, headers=headers))
    return EXIT_OK


async def cmd_workflows(args: argparse.Namespace, weft: AsyncWeft) -> int:
    if args.action == "get":
        print_json(await weft.workflows.get(args.id))
        return EXIT_OK
    flows = [w async for w in weft.workflows.list(limit=100)]
    if args.json:
        print_json(flows)
    else:
        out = console(stderr=False)
        columns = ["id", "name", "description", "updated_at"]
        headers = {"updated_at": "updated"}
        out.print(table(flows, columns, formats={"updated_at": _when}, headers=headers))
    return EXIT_OK


async def dispatch(args: argparse.Namespace, state: State) -> int:
    try:
        weft = AsyncWeft()
    except WeftError as exc:  # no API key
        raise Usage(str(exc)) from None
    async with weft:
        if args.cmd == "run":
            return await cmd_run(args, weft, state)
        if args.cmd == "runs":
            return await cmd_runs(args, weft, state)
        if args.cmd == "workflows":
            return await cmd_workflows(args, weft)
        print_json(await weft.me())
        return EXIT_OK
