"""The table stage: exact results, clear stage errors, no way out of the sandbox."""

import time
from typing import Any

import pytest

from services.runs.worker.context import AttachmentText
from services.runs.worker.model import StageError
from services.runs.worker.stages import table

SEED = (
    "date,project,hours\n2026-11-02,Apollo,3\n2026-11-02,Zephyr,2\n"
    "2026-11-03,Apollo,2\n2026-11-03,Zephyr,3\n"
)
TOTALS = (
    "SELECT coalesce(project, 'TOTAL') AS project, sum(hours) AS hours FROM timesheet "
    "GROUP BY GROUPING SETS ((project), ()) ORDER BY grouping(project), project"
)


def stage(query: str, **extra: Any) -> dict[str, Any]:
    return {"id": "t", "type": "table", "query": query, "tables": {"timesheet": "params.csv"}}


async def run(query: str, csv: str = SEED, **extra: Any) -> dict[str, Any]:
    result = await table.run({**stage(query), **extra}, {"csv": csv}, [])
    assert result.cost_micros == 0 and result.model is None
    out: dict[str, Any] = result.output
    return out


async def fails(query: str, csv: str = SEED, **extra: Any) -> StageError:
    with pytest.raises(StageError) as caught:
        await run(query, csv, **extra)
    return caught.value


async def test_totals_from_csv_text() -> None:
    out = await run(TOTALS)
    assert out["columns"] == ["project", "hours"]
    assert out["rows"] == [["Apollo", 5], ["Zephyr", 5], ["TOTAL", 10]]
    assert out["row_count"] == 3 and out["truncated"] is False
    assert out["text"].splitlines()[0].split() == ["project", "|", "hours"]
    assert "TOTAL   | 10" in out["text"]


async def test_sums_of_5000_decimal_rows_are_exact() -> None:
    lines = [f"2026-11-{i % 28 + 1:02d},{'Apollo' if i % 2 else 'Zephyr'},0.1" for i in range(5000)]
    out = await run(TOTALS, "date,project,hours\n" + "\n".join(lines) + "\n")
    # As binary floats 2,500 times 0.1 is 250.00000000000335; the stage keeps decimals.
    assert out["rows"] == [["Apollo", 250], ["Zephyr", 250], ["TOTAL", 500]]


async def test_dates_are_typed_and_rendered_as_iso_text() -> None:
    out = await run("SELECT max(date) AS last, typeof(max(date)) AS t FROM timesheet")
    assert out["rows"] == [["2026-11-03", "DATE"]]


async def test_a_missing_column_is_named() -> None:
    err = await fails("SELECT person, sum(hours) FROM timesheet GROUP BY person")
    assert err.code == table.TABLE_QUERY_ERROR
    assert '"person" not found' in err.message


async def test_bad_sql_is_a_query_error() -> None:
    err = await fails("SELEC project FROM timesheet")
    assert err.code == table.TABLE_QUERY_ERROR and "syntax error" in err.message


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM read_text('https://example.com/')",
        "COPY timesheet TO '/tmp/weft-table-leak.csv'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "ATTACH '/tmp/weft-table.db' AS other",
        "SET enable_external_access = true",
        "SELECT 1; SELECT * FROM read_csv('/etc/passwd')",
        "DROP TABLE timesheet",
    ],
)
async def test_files_network_and_changes_are_refused(query: str) -> None:
    err = await fails(query)
    assert err.code == table.TABLE_QUERY_ERROR
    assert "root:" not in err.message


async def test_the_time_limit_interrupts_the_query() -> None:
    began = time.monotonic()
    err = await fails("SELECT count(*) FROM range(100000000000)", timeout_seconds=0.5)
    assert err.code == table.TABLE_LIMIT_EXCEEDED and "0.5s" in err.message
    assert time.monotonic() - began < 5


async def test_rows_over_the_cap_are_truncated_and_say_so() -> None:
    out = await run("SELECT range AS n FROM range(50)", max_rows=10)
    assert out["row_count"] == 10 and out["truncated"] is True
    assert out["rows"][-1] == [9]
    assert "only the first 10 rows" in out["text"]


async def test_no_source_with_data_is_an_input_error() -> None:
    err = await fails("SELECT 1", csv="  ")
    assert err.code == table.TABLE_INPUT_ERROR and "'timesheet'" in err.message


async def test_attachments_become_tables_named_from_their_files() -> None:
    attachments = [
        AttachmentText("att_1", "Nov Hours.csv", "csv", SEED, False),
        AttachmentText("att_2", "2026.xlsx", "xlsx", "## Sheet: S1\na,b\n1,2\n\n", False),
        AttachmentText("att_3", "notes.pdf", "pdf", "text", False),
    ]
    st = {"id": "t", "type": "table", "query": "SELECT"}
    st["query"] = "SELECT (SELECT sum(hours) FROM nov_hours) AS h, (SELECT b FROM t_2026) AS b"
    out = (await table.run(st, {}, attachments)).output
    assert out["rows"] == [[10, 2]]


async def test_a_truncated_attachment_is_refused() -> None:
    attachments = [AttachmentText("att_1", "big.csv", "csv", SEED + "[Truncated...]", True)]
    with pytest.raises(StageError) as caught:
        await table.run({"id": "t", "type": "table", "query": "SELECT 1"}, {}, attachments)
    assert caught.value.code == table.TABLE_INPUT_ERROR and "big.csv" in caught.value.message


async def test_a_file_field_source_uses_its_attachment() -> None:
    attachments = [AttachmentText("att_9", "hours.csv", "csv", SEED, False)]
    st = {
        "id": "t",
        "type": "table",
        "query": "SELECT sum(hours) FROM timesheet",
        "tables": {"timesheet": ["params.csv", "params.sheet"]},
    }
    out = (await table.run(st, {"sheet": "att_9"}, attachments)).output
    assert out["rows"] == [[10]]
