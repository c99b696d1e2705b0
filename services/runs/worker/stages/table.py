"""`table` stage: exact SQL over the run's CSV params and CSV/XLSX attachments (DuckDB).

Each query gets its own in-memory database: the tables are loaded, then file system and
network access are switched off and the configuration locked before the stage's SQL
runs, so the query cannot read files, write files, attach databases or load extensions.
It runs in a thread (the event loop stays free), on one DuckDB thread, under a memory
limit, and a timer interrupts it at the stage's time limit. Only one SELECT statement is
accepted. Every failure is a stage error naming the problem; nothing is guessed.

Attachments are read from their extracted text (the only form the worker can read).
A truncated extraction (over the storage row or character cap) is refused rather than
summed: a total over part of a table would be a wrong answer that looks right.
"""

import asyncio
import datetime
import decimal
import math
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

import duckdb

from services.runs.domain.transitions import StageResult
from services.runs.worker.context import AttachmentText
from services.runs.worker.model import StageError

TABLE_QUERY_ERROR = "TABLE_QUERY_ERROR"  # bad SQL, missing column/table, refused access
TABLE_INPUT_ERROR = "TABLE_INPUT_ERROR"  # a table's data is missing, malformed or truncated
TABLE_LIMIT_EXCEEDED = "TABLE_LIMIT_EXCEEDED"  # time or memory limit

DEFAULT_MAX_ROWS = 1000
DEFAULT_TIMEOUT_SECONDS = 10.0
MEMORY_LIMIT = "256MB"
TABLE_KINDS = frozenset({"csv", "xlsx"})
_SHEET = re.compile(r"^## Sheet: (.*)$")
_PLAIN_DECIMAL = r"^\s*[-+]?(\d+\.?\d*|\.\d+)\s*$"
_MAX_SCALE = 12


@dataclass(frozen=True)
class TableData:
    name: str
    csv_text: str


def derive_name(text: str) -> str:
    """A table name from a file name or sheet title: lower case, `[a-z0-9_]`, the
    extension dropped, `t_` in front when it would start with a digit."""
    stem = re.sub(r"\.(csv|xlsx|tsv|txt)$", "", text.strip(), flags=re.I)
    name = re.sub(r"[^a-z0-9_]+", "_", stem.lower()).strip("_") or "table"
    return f"t_{name}" if name[0].isdigit() else name


def _attachment_tables(att: AttachmentText) -> list[TableData]:
    if att.truncated:
        raise StageError(
            TABLE_INPUT_ERROR,
            f"attachment {att.filename!r} was only partly extracted (row or size cap); "
            "the table stage computes over whole tables only",
        )
    base = derive_name(att.filename)
    if att.kind != "xlsx":
        return [TableData(base, att.text)]
    sheets: list[tuple[str, list[str]]] = []
    for line in att.text.splitlines():
        match = _SHEET.match(line)
        if match:
            sheets.append((match.group(1), []))
        elif sheets:
            sheets[-1][1].append(line)
    if len(sheets) == 1:
        return [TableData(base, "\n".join(sheets[0][1]))]
    return [TableData(f"{base}_{derive_name(title)}", "\n".join(lines)) for title, lines in sheets]


def collect_tables(
    stage: dict[str, Any], params: dict[str, Any], attachments: list[AttachmentText]
) -> list[TableData]:
    """The stage's tables: every CSV/XLSX attachment under its derived name, and each
    entry of `tables` (name -> sources, the first one present wins)."""
    tables: dict[str, TableData] = {}
    sheets = [t for a in attachments if a.kind in TABLE_KINDS for t in _attachment_tables(a)]
    for table in sheets:
        name, n = table.name, 2
        while name in tables:
            name, n = f"{table.name}_{n}", n + 1
        tables[name] = TableData(name, table.csv_text)
    by_id = {a.id: a for a in attachments}
    for name, sources in (stage.get("tables") or {}).items():
        found = _resolve(name, [sources] if isinstance(sources, str) else sources, params, by_id)
        if found is None:
            raise StageError(
                TABLE_INPUT_ERROR,
                f"table {name!r}: none of its sources ({', '.join(map(str, sources))}) "
                "has data in this run",
            )
        tables[name] = TableData(name, found)
    return list(tables.values())


def _resolve(
    name: str, sources: list[str], params: dict[str, Any], by_id: dict[str, AttachmentText]
) -> str | None:
    for source in sources:
        if source == "attachment":
            atts = [a for a in by_id.values() if a.kind in TABLE_KINDS]
            if atts:
                return _only_sheet(name, atts[0])
            continue
        value = params.get(source.removeprefix("params."))
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, str) and value in by_id:  # a `file` field: an attachment id
            return _only_sheet(name, by_id[value])
        if not isinstance(value, str):
            raise StageError(TABLE_INPUT_ERROR, f"table {name!r}: {source} is not CSV text")
        return value
    return None


def _only_sheet(name: str, att: AttachmentText) -> str:
    if att.kind not in TABLE_KINDS:
        raise StageError(
            TABLE_INPUT_ERROR, f"table {name!r}: {att.filename!r} is not a CSV or XLSX file"
        )
    sheets = _attachment_tables(att)
    if len(sheets) != 1:
        raise StageError(
            TABLE_INPUT_ERROR, f"table {name!r}: {att.filename!r} has {len(sheets)} sheets"
        )
    return sheets[0].csv_text


def _json_value(value: Any) -> Any:
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # NaN is not JSON
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.date | datetime.time | datetime.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def render_text(columns: list[str], rows: list[list[Any]]) -> str:
    """A fixed-width text table, columns aligned, for prompts and people."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _load(con: duckdb.DuckDBPyConnection, table: TableData, folder: str) -> None:
    path = os.path.join(folder, f"{table.name}.csv")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(table.csv_text)
    if not table.csv_text.strip():
        raise StageError(TABLE_INPUT_ERROR, f"table {table.name!r} has no rows")
    source = "read_csv(?, header=true, auto_detect=true)"
    try:
        types = con.execute(f"DESCRIBE SELECT * FROM {source}", [path]).fetchall()
        overrides = {}
        for column, kind, *_ in types:
            if kind not in ("DOUBLE", "FLOAT"):
                continue
            # Decimal text read as DOUBLE would sum with binary rounding: keep it exact.
            q = f'"{column.replace(chr(34), chr(34) * 2)}"'
            ok, scale = con.execute(
                f"SELECT bool_and({q} IS NULL OR regexp_matches({q}, ?)), "
                f"max(length(split_part(trim({q}), '.', 2))) "
                f"FROM read_csv(?, header=true, all_varchar=true)",
                [_PLAIN_DECIMAL, path],
            ).fetchone() or (False, None)
            if ok and (scale or 0) <= _MAX_SCALE:
                overrides[column] = f"DECIMAL(38,{scale or 0})"
        typed = ", types=?" if overrides else ""
        con.execute(
            f'CREATE TABLE "{table.name}" AS SELECT * FROM '
            f"read_csv(?, header=true, auto_detect=true{typed})",
            [path, overrides] if overrides else [path],
        )
    except duckdb.InterruptException:
        raise
    except duckdb.Error as exc:
        raise StageError(
            TABLE_INPUT_ERROR, f"table {table.name!r} is not readable CSV: {_first_line(exc)}"
        ) from None
    finally:
        os.remove(path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.split("\n\n")[0][:500]


def execute(sql: str, tables: list[TableData], *, max_rows: int, timeout: float) -> dict[str, Any]:
    """Load the tables, lock the database down, run `sql`: the stage's output (blocking)."""
    con = duckdb.connect(
        ":memory:",
        config={
            "threads": 1,
            "memory_limit": MEMORY_LIMIT,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        },
    )
    timer = threading.Timer(timeout, con.interrupt)
    timer.start()
    try:
        with tempfile.TemporaryDirectory(prefix="weft-table-") as folder:
            for table in tables:
                _load(con, table, folder)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            statements = con.extract_statements(sql)
        except duckdb.Error as exc:
            raise StageError(TABLE_QUERY_ERROR, f"query: {_first_line(exc)}") from None
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise StageError(TABLE_QUERY_ERROR, "query: give exactly one SELECT statement")
        result = con.execute(sql)
        columns = [d[0] for d in result.description or []]
        fetched = result.fetchmany(max_rows + 1)
    except duckdb.InterruptException:
        raise StageError(
            TABLE_LIMIT_EXCEEDED, f"the table stage ran over its time limit ({timeout:g}s)"
        ) from None
    except duckdb.OutOfMemoryException:
        raise StageError(
            TABLE_LIMIT_EXCEEDED, f"the query needs more than the {MEMORY_LIMIT} memory limit"
        ) from None
    except duckdb.Error as exc:
        raise StageError(TABLE_QUERY_ERROR, f"query: {_first_line(exc)}") from None
    finally:
        timer.cancel()
        con.close()
    truncated = len(fetched) > max_rows
    rows = [[_json_value(v) for v in row] for row in fetched[:max_rows]]
    text = render_text(columns, rows)
    if truncated:
        text += f"\n[Truncated: only the first {max_rows:,} rows are shown.]"
    return {
        "columns": columns,
        "rows": rows,
        "row_count": len(rows),
        "truncated": truncated,
        "text": text,
    }


async def run(
    stage: dict[str, Any], params: dict[str, Any], attachments: list[AttachmentText]
) -> StageResult:
    """The query's result as {columns, rows, row_count, truncated, text}; no cost."""
    tables = collect_tables(stage, params, attachments)
    max_rows = int(stage.get("max_rows") or DEFAULT_MAX_ROWS)
    timeout = float(stage.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS)
    output = await asyncio.to_thread(
        execute, str(stage["query"]), tables, max_rows=max_rows, timeout=timeout
    )
    return StageResult(output=output)
