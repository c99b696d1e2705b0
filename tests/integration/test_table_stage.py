"""The table stage through the whole stack: exact totals feed later stages; a bad
column fails the run with the stage's error."""

from typing import Any

import aiohttp
import pytest

from tests.support.runs import Account, apply_workflow, create_run, wait_for

pytestmark = pytest.mark.timeout(120)

SEED = (
    "date,project,hours\n2026-11-02,Apollo,3\n2026-11-02,Zephyr,2\n"
    "2026-11-03,Apollo,2\n2026-11-03,Zephyr,3\n"
)
STAGES: list[dict[str, Any]] = [
    {
        "id": "totals",
        "type": "table",
        "tables": {"timesheet": "params.csv"},
        "query": (
            "SELECT coalesce(t.project, 'TOTAL') AS project, sum(t.hours) AS hours "
            "FROM timesheet AS t GROUP BY GROUPING SETS ((t.project), ()) "
            "ORDER BY grouping(t.project), project"
        ),
    },
    {
        "id": "words",
        "type": "template",
        "template": "{% for p, h in stages.totals.rows %}{{ p }}={{ h }};{% endfor %}",
    },
]
FIELDS = [{"name": "csv", "type": "text", "required": True}]
OUTPUT = '{{ {"totals": stages.totals, "words": stages.words} | tojson }}'


async def test_table_totals_are_exact_and_feed_later_stages(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(stack, STAGES, fields=FIELDS, output=OUTPUT)
    run = await create_run(http, stack, account, workflow_id, "sum", params={"csv": SEED})
    done = await wait_for(http, stack, account, run["id"])
    assert done["status"] == "completed", done["error"]
    totals = done["result"]["totals"]
    assert totals["columns"] == ["project", "hours"]
    assert totals["rows"] == [["Apollo", 5], ["Zephyr", 5], ["TOTAL", 10]]
    assert totals["row_count"] == 3 and totals["truncated"] is False
    assert "TOTAL   | 10" in totals["text"]
    assert done["result"]["words"] == "Apollo=5;Zephyr=5;TOTAL=10;"


async def test_a_csv_without_the_column_fails_the_run_with_the_stage_error(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(stack, STAGES, fields=FIELDS, output=OUTPUT)
    csv = "date,team,hours\n2026-11-02,Apollo,3\n"
    run = await create_run(http, stack, account, workflow_id, "sum", params={"csv": csv})
    done = await wait_for(http, stack, account, run["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "TABLE_QUERY_ERROR"
    assert done["error"]["stage"] == "totals"
    assert 'does not have a column named "project"' in done["error"]["message"]
