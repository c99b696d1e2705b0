"""Output of the `weft` command: JSON for machines on stdout, tables and notes for
people on stderr (or stdout for the list commands), via rich."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from pydantic import BaseModel
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from weftapi.models import HumanInputRequest, Run


def console(stderr: bool) -> Console:
    """A console; when not a terminal (a pipe, a file) wide enough that ids never wrap."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 200, highlight=False)


def dump(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, list):
        return [dump(o) for o in obj]
    return obj


def print_json(obj: Any) -> None:
    print(json.dumps(dump(obj), indent=2, ensure_ascii=False), flush=True)


WRAPPING = frozenset({"workflow_id", "name", "description"})


def table(
    rows: Iterable[Any],
    columns: Sequence[str],
    title: Optional[str] = None,
    formats: Optional[Dict[str, Callable[[Any], str]]] = None,
    headers: Optional[Dict[str, str]] = None,
) -> Table:
    """A table of objects' attributes (`columns`, titled by `headers`), formatted by
    `formats` when given."""
    out = Table(
        title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
        collapse_padding=True,
    )  # fmt: skip
    grid: List[List[str]] = []
    for row in rows:
        cells: List[str] = []
        for name in columns:
            value = getattr(row, name, None)
            fmt = (formats or {}).get(name)
            cells.append(fmt(value) if fmt else ("" if value is None else str(value)))
        grid.append(cells)
    for i, name in enumerate(columns):
        header = (headers or {}).get(name, name)
        if name in WRAPPING:
            out.add_column(header, overflow="fold", min_width=8)
        else:  # ids, statuses and times keep their width: they are copied into commands
            width = max([len(header)] + [len(cells[i]) for cells in grid])
            out.add_column(header, no_wrap=True, min_width=width)
    for cells in grid:
        out.add_row(*cells)
    return out


def request_panel(run: Run) -> Panel:
    """What a waiting run asks for: prompt, context (e.g. the draft to review), the fields,
    and the command that answers it."""
    req: Optional[HumanInputRequest] = run.human_input_request
    assert req is not None
    parts: List[Any] = []
    if req.prompt:
        parts.append(f"[bold]{req.prompt}[/bold]")
    if req.context not in (None, {}, ""):
        context = req.context
        if isinstance(context, (dict, list)):
            parts.append("Context:")
            parts.append(Syntax(json.dumps(context, indent=2, ensure_ascii=False), "json"))
        else:
            parts.append(f"Context: {context}")
    if req.fields:
        lines = []
        for f in req.fields:
            extra = " (required)" if f.required else ""
            opts = f" one of {f.options}" if f.options else ""
            desc = f" - {f.description}" if f.description else ""
            lines.append(f"  {f.name}: {f.type}{opts}{extra}{desc}")
        parts.append("Fields:\n" + "\n".join(lines))
    example = " ".join(f"{f.name}=..." for f in req.fields if f.required) or "name=value"
    parts.append(f"Answer with: weft runs input {run.id} {example}")
    from rich.console import Group

    return Panel(
        Group(*parts), title=f"run {run.id} awaits input at stage {req.stage}", expand=False
    )
