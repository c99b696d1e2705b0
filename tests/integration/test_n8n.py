"""The n8n recipes of docs/integrations.md and the Weft node (clients/n8n), run by a real
n8n 2.8.4 (`n8n import:workflow`, `n8n execute`) against the live stack.

The workflows are docs/n8n/*.json as published, with the example base URL, workflow ids,
slug, file path and run id swapped for this stack's. The stack's workflows declare the
same fields as the shipped ones (workflows/*.yaml) but run no LLM stage, so the test
does not wait for the embedded model. Each `n8n execute` starts a whole n8n (~15 s),
so the executions are few: the two HTTP Request recipes with a file, the JSON one, the
node's workflow twice (the second must replay the same runs), the review answer and a
refused answer (a 4xx). A second test starts the editor (`n8n start`): the credential
test, the workflow list and the field mapping through n8n's own REST API, then
screenshots of the node for docs/n8n/ (Debian's chromium via Playwright).
"""

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from playwright.async_api import async_playwright
from yarl import URL

from devstack.stack import PROJECT_ROOT
from tests.support.console import chromium_path
from tests.support.n8n import N8n, build_node_package, n8n_binary
from tests.support.runs import Account, apply_workflow, get_run

# Installing n8n on a fresh machine takes ~5 min; the executions ~2 min.
pytestmark = pytest.mark.timeout(1500)

RECIPES = PROJECT_ROOT / "docs" / "n8n"
TIMESHEET = "name,project,hours\nAnn,Apollo,3\nBob,Apollo,4.5\nAnn,Zeus,2\n"
TOTALS = [["Apollo", 7.5], ["Zeus", 2], ["TOTAL", 9.5]]


def _shipped(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / "workflows" / name).read_text())
    return loaded


async def _stand_ins(stack: Any) -> dict[str, str]:
    """Workflows with the shipped ones' fields and no LLM stage: example id -> real id."""
    classify = _shipped("classify-ticket.yaml")
    timesheet = _shipped("timesheet-summary.yaml")
    review = _shipped("review-reply.yaml")
    slug = f"timesheet-{uuid.uuid4().hex[:8]}"
    echo = '{{ {"product": params.product, "ticket": input_text} | tojson }}'
    ids = {
        "wf_classify_ticket": await apply_workflow(
            stack,
            [{"id": "classify", "type": "template", "output": "json", "template": echo}],
            fields=classify["fields"],
            name=classify["name"],
        ),
        "wf_timesheet_summary": await apply_workflow(
            stack,
            [timesheet["stages"][0]],
            fields=timesheet["fields"],
            slug=slug,
            name=timesheet["name"],
            output='{{ {"totals": stages.totals.rows, "max": params.max_projects} | tojson }}',
        ),
        "wf_review_reply": await apply_workflow(
            stack,
            [
                {"id": "draft", "type": "template", "template": "Dear {{ params.customer_name }}"},
                *review["stages"][1:],
            ],
            fields=review["fields"],
            name=review["name"],
        ),
    }
    return {**ids, "/endpoints/timesheet-summary": f"/endpoints/{slug}"}


def _import(n8n: N8n, tmp: Path, swaps: dict[str, str], names: list[str]) -> None:
    folder = tmp / f"import-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    for name in names:
        text = (RECIPES / name).read_text()
        for example, real in swaps.items():
            text = text.replace(example, real)
        (folder / name).write_text(text)
    n8n.cli("import:workflow", "--separate", f"--input={folder}")


def _credentials(stack: Any, account: Account, path: Path) -> None:
    path.write_text(
        json.dumps(
            [
                {
                    "id": "WeftHeaderAuth01",
                    "name": "Weft API key (Header Auth)",
                    "type": "httpHeaderAuth",
                    "data": {"name": "Authorization", "value": f"Bearer {account.token}"},
                },
                {
                    "id": "WeftApiKey000001",
                    "name": "Weft API",
                    "type": "weftApi",
                    "data": {"baseUrl": stack.base_url, "apiKey": account.token},
                },
            ]
        )
    )


@dataclass(frozen=True)
class Setup:
    n8n: N8n
    swaps: dict[str, str]
    tmp: Path


@pytest.fixture(scope="module")
async def setup(stack: Any, account: Account, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """n8n with the Weft node, both credentials and the recipes, against this stack."""
    tmp = tmp_path_factory.mktemp("n8n")
    binary = n8n_binary()
    package = build_node_package(tmp / "build")
    files = tmp / "files"
    files.mkdir()
    (files / "week-49.csv").write_text(TIMESHEET)
    n8n = N8n(binary, tmp / "n8n", package, files)
    _credentials(stack, account, tmp / "credentials.json")
    n8n.cli("import:credentials", f"--input={tmp / 'credentials.json'}")
    swaps = {
        "https://weft.example.com": stack.base_url,
        "/data/timesheets/week-49.csv": str(files / "week-49.csv"),
        **await _stand_ins(stack),
    }
    names = [
        "http-json-run.json",
        "http-upload-run.json",
        "http-endpoint-file-run.json",
        "weft-node-runs.json",
    ]
    _import(n8n, tmp, swaps, names)
    return Setup(n8n, swaps, tmp)


async def test_n8n_recipes_and_node_run_workflows(
    setup: Setup, stack: Any, account: Account
) -> None:
    n8n, swaps, tmp_path = setup.n8n, setup.swaps, setup.tmp
    # HTTP Request recipes: a JSON run, a file uploaded first, one multipart request.
    out = n8n.execute("WeftHttpJsonRun1")
    run = out["Wait for result"]["data"]
    assert run["status"] == "completed", run
    assert run["result"] == {"product": "billing", "ticket": run["result"]["ticket"]}
    assert run["result"]["ticket"].startswith("My invoice")
    for recipe in ("WeftHttpUpload01", "WeftHttpFormRun1"):
        run = n8n.execute(recipe)["Wait for result"]["data"]
        assert run["status"] == "completed", run
        assert run["result"] == {"totals": TOTALS, "max": 5}, run
        assert isinstance(run["cost_cents"], int)

    # The node: a multipart run from a binary property, then a run that waits for review.
    first = n8n.execute("WeftNodeRuns0001")
    summary, draft = first["Summarise timesheet"], first["Draft reply"]
    assert summary["status"] == "completed", summary
    assert summary["result"] == {"totals": TOTALS, "max": 5}
    assert draft["status"] == "awaiting_input", draft
    assert draft["human_input_request"]["stage"] == "review"
    # Executing the same items again (a retry) replays both runs: no second run.
    again = n8n.execute("WeftNodeRuns0001")
    assert again["Summarise timesheet"]["id"] == summary["id"]
    assert again["Draft reply"]["id"] == draft["id"]

    # A second workflow answers the review; the run completes.
    _import(n8n, tmp_path, {**swaps, "run_...": draft["id"]}, ["weft-node-answer-review.json"])
    answered = n8n.execute("WeftNodeReview01")["Approve draft"]
    assert answered["status"] == "completed", answered
    assert answered["result"]["approved"] is True
    assert answered["result"]["customer_name"] == "Ann"
    async with aiohttp.ClientSession() as http:
        final = await get_run(http, stack, account, draft["id"])
    assert final["status"] == "completed"

    # A 4xx fails the node at once with Weft's code, message and request id.
    failed = n8n.execute_failing("WeftNodeReview01")
    expected = f'"message": "RUN_NOT_AWAITING_INPUT: Run {draft["id"]} is completed'
    assert expected in failed, failed[-3000:]
    assert re.search(r"Weft request id req_\w+", failed), failed[-3000:]
    assert '"httpCode": "409"' in failed, failed[-3000:]


async def test_n8n_editor_shows_the_weft_node(setup: Setup, stack: Any, account: Account) -> None:
    """The editor's own REST calls: the credential test (GET /me), the workflow list and
    the fields of the chosen workflow; then screenshots of the node for the docs."""
    with setup.n8n.server() as url:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            owner = {
                "email": "owner@example.com",
                "password": "Weft-n8n-1",
                "firstName": "O",
                "lastName": "W",
            }
            async with http.post(f"{url}/rest/owner/setup", json=owner) as answer:
                assert answer.status == 200, await answer.text()
            weft = {"id": "WeftApiKey000001", "name": "Weft API", "type": "weftApi"}
            async with http.post(
                f"{url}/rest/credentials/test",
                json={
                    "credentials": {
                        **weft,
                        "data": {"baseUrl": stack.base_url, "apiKey": account.token},
                    }
                },
            ) as answer:
                tested = (await answer.json())["data"]
            assert tested["status"] == "OK", tested
            common = {
                "nodeTypeAndVersion": {"name": "n8n-nodes-weft.weft", "version": 1},
                "credentials": {"weftApi": {"id": weft["id"], "name": weft["name"]}},
            }
            workflow_id = setup.swaps["wf_timesheet_summary"]
            async with http.post(
                f"{url}/rest/dynamic-node-parameters/options",
                json={
                    **common,
                    "path": "parameters.workflowId",
                    "methodName": "getWorkflows",
                    "currentNodeParameters": {"operation": "runWorkflow"},
                },
            ) as answer:
                options = (await answer.json())["data"]
            assert workflow_id in [option["value"] for option in options], options
            async with http.post(
                f"{url}/rest/dynamic-node-parameters/resource-mapper-fields",
                json={
                    **common,
                    "path": "parameters.fields",
                    "methodName": "getRunFields",
                    "currentNodeParameters": {
                        "operation": "runWorkflow",
                        "workflowId": workflow_id,
                    },
                },
            ) as answer:
                fields = (await answer.json())["data"]["fields"]
            by_name = {field["id"]: field for field in fields}
            assert set(by_name) == {"csv", "max_projects", "timesheet"}, fields
            assert by_name["max_projects"]["type"] == "number"
            assert by_name["max_projects"]["defaultValue"] == 10
            cookie = http.cookie_jar.filter_cookies(URL(url))["n8n-auth"].value
        await _screenshots(url, cookie)


async def _screenshots(url: str, auth_cookie: str) -> None:
    """The node on the canvas and its Run Workflow panel, saved to docs/n8n/."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path())
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            await context.add_cookies([{"name": "n8n-auth", "value": auth_cookie, "url": url}])
            page = await context.new_page()
            try:
                await page.goto(f"{url}/workflow/WeftNodeRuns0001")
                node = page.get_by_text("Summarise timesheet", exact=True).first
                await node.wait_for(timeout=30_000)
                await page.wait_for_timeout(1000)
                await page.screenshot(path=str(RECIPES / "editor-workflow.png"))
                # The editor opens a node's panel from its id in the URL.
                workflow = json.loads((RECIPES / "weft-node-runs.json").read_text())
                [node_id] = [
                    n["id"] for n in workflow["nodes"] if n["name"] == "Summarise timesheet"
                ]
                await page.goto(f"{url}/workflow/WeftNodeRuns0001/{node_id}")
                await page.get_by_text("max_projects").first.wait_for(timeout=30_000)
                await page.wait_for_timeout(1000)
                await page.screenshot(path=str(RECIPES / "editor-run-workflow.png"))
            except Exception:
                await page.screenshot(path="/tmp/n8n-editor-failure.png")
                raise
        finally:
            await browser.close()
