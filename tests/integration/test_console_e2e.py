"""The console end to end in a real browser (Debian's chromium via Playwright), against
the real stack: accept an invite and sign in; create a key and see its secret once; build
a workflow with a file field and a table stage (an invalid definition first: its error
inline); run it from the Run panel with a file and watch the stages complete; publish;
copy the Python snippet and run it unchanged; approve a human-review run; see the ledger.
Another account's run URL is a 404. Every page visited is saved to docs/console/."""

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.support.console import accept_and_sign_in, chromium_path, invite, shot
from tests.support.runs import apply_workflow, create_account, create_run

pytestmark = pytest.mark.timeout(240)

SHEET = "date,project,hours\n2026-11-02,Apollo,3\n2026-11-02,Zephyr,2\n2026-11-03,Apollo,2.5\n"


SUMMARY = "{% for p, h in stages.totals.rows %}{{ p }}={{ h }} {% endfor %}{{ params.unit }}"
FINAL = (
    '{{ {"approved": stages.review.approved, "text": stages.review.edited or stages.draft}'
    " | tojson }}"
)


def file_workflow(slug: str) -> str:
    return f"""\
slug: {slug}
name: Timesheet totals
description: Sums the hours of an uploaded timesheet (CSV) with an exact SQL table stage.
fields:
  - name: sheet
    type: file
    required: true
    constraints: {{kinds: [csv]}}
  - name: notes
    type: file
    constraints: {{kinds: [txt]}}
  - name: unit
    type: select
    default: hours
    constraints: {{options: [hours, days]}}
stages:
  - id: totals
    type: table
    query: SELECT project, sum(hours) AS hours FROM sheet GROUP BY project ORDER BY project
  - id: summary
    type: template
    template: {json.dumps(SUMMARY)}
"""


def review_workflow(slug: str) -> str:
    return f"""\
slug: {slug}
name: Reviewed note
stages:
  - id: draft
    type: template
    template: "Draft: {{{{ input_text }}}}"
  - id: review
    type: human_review
    prompt: Approve the draft, or edit it.
    context: '{{{{ {{"draft": stages.draft}} | tojson }}}}'
    fields:
      - name: approved
        type: boolean
        required: true
      - name: edited
        type: text
  - id: final
    type: template
    output: json
    template: {json.dumps(FINAL)}
"""


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
async def page(stack: Any, browser: Browser) -> AsyncIterator[Page]:
    """A signed-in pro person with $100 of credits (one per module)."""
    person = invite(stack, plan="pro")
    stack.admin("credits", "grant", "--account", person.user_id, "--amount-usd", "100.00")
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    opened = await context.new_page()
    await accept_and_sign_in(opened, stack, person)
    await opened.wait_for_url("**/app/runs")
    yield opened
    await context.close()


async def create_workflow(page: Page, stack: Any, definition: str) -> str:
    await page.goto(f"{stack.base_url}/app/workflows/new")
    await page.get_by_label("Definition").fill(definition)
    await page.get_by_role("button", name="Create draft").click()
    await page.wait_for_url("**/app/workflows/wf_*")
    return page.url.rsplit("/", 1)[1]


async def create_key(page: Page, stack: Any, name: str, expires_in_days: str = "") -> str:
    """A key made in Settings -> API keys; answers its secret (shown this once)."""
    await page.goto(f"{stack.base_url}/app/settings/keys")
    await page.get_by_label("Name", exact=True).fill(name)
    await page.get_by_label("Expires in days").fill(expires_in_days)
    await page.get_by_role("button", name="Create key").click()
    return (await page.locator("#new-secret").inner_text()).strip()


async def test_keys_secret_shown_once_then_revoked(page: Page, stack: Any, http: Any) -> None:
    secret = await create_key(page, stack, "ci key", "30")
    assert secret.startswith("wft_live_") and len(secret) > 40
    await expect(page.get_by_role("button", name="Copy")).to_be_visible()
    await shot(page, "keys-created")
    # Shown once: the list shows only the prefix, and a reload shows no secret.
    await page.goto(f"{stack.base_url}/app/settings/keys")
    assert secret not in await page.content()
    await expect(page.locator("tbody tr", has_text="ci key")).to_contain_text(secret[:13])
    # The key works against the API...
    async with http.get(
        f"{stack.base_url}/api/v1/me", headers={"Authorization": f"Bearer {secret}"}
    ) as response:
        assert response.status == 200
    # ...and its use shows as "last used" (flushed every few seconds).
    await page.goto(f"{stack.base_url}/app/settings/keys")
    await shot(page, "keys")
    await page.locator("tbody tr", has_text="ci key").get_by_role("button", name="Revoke").click()
    await expect(page.locator("tbody tr", has_text="ci key")).to_contain_text("revoked")


async def test_build_run_publish_and_get_code(page: Page, stack: Any, tmp_path: Path) -> None:
    slug = f"sheet-{uuid.uuid4().hex[:8]}"
    # An invalid definition: the API's validation, shown beside the editor with its path.
    await page.goto(f"{stack.base_url}/app/workflows/new")
    await page.get_by_label("Definition").fill(
        file_workflow(slug).replace("type: table", "type: tabel")
    )
    await page.get_by_role("button", name="Create draft").click()
    await expect(page.get_by_role("alert")).to_contain_text("stages")
    await shot(page, "workflow-editor-error")
    text = await page.get_by_label("Definition").input_value()
    assert "type: tabel" in text
    # The error names the line it is about: the wrong type's, or its stage's first.
    lines = text.splitlines()
    wrong = next(n for n, row in enumerate(lines, 1) if "tabel" in row)
    line = int(await page.locator("#error-line").inner_text())
    assert line <= wrong and not any("- id:" in row for row in lines[line:wrong]), (line, wrong)

    workflow_id = await create_workflow(page, stack, file_workflow(slug))
    await shot(page, "workflow-draft")
    # Run the draft from the Run panel with a file; the run page follows it live.
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(SHEET)
    await page.get_by_label("Run", exact=True).select_option("draft")
    await page.get_by_label("input_text").fill("sum the hours")
    await page.get_by_label("sheet").set_input_files(str(sheet))
    # `notes` (an optional file) is left empty: nothing is sent for it.
    await page.get_by_role("button", name="Run", exact=True).click()
    await page.wait_for_url(f"**/app/workflows/{workflow_id}/runs/run_*")
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=60_000)
    await expect(page.locator("#timeline")).to_contain_text("totals")
    await expect(page.locator("#timeline")).to_contain_text("summary")
    await expect(page.locator("#run-result")).to_contain_text("Apollo=5.5 Zephyr=2 hours")
    await expect(page.locator(".events")).to_contain_text("run.completed")
    await shot(page, "run-completed")

    # Publish, then the Publish panel's endpoint and Get Code.
    await page.goto(f"{stack.base_url}/app/workflows/{workflow_id}")
    await page.get_by_label("Note for this version").fill("first")
    await page.get_by_role("button", name="Publish the draft as version 1").click()
    await expect(page.locator("#wf-version")).to_have_text("v1")
    await expect(page.locator("#endpoint-url")).to_have_text(
        f"{stack.base_url}/api/v1/endpoints/{slug}"
    )
    await page.get_by_role("tab", name="python (multipart)").click()
    panel = page.locator('[role="tabpanel"][data-language="python"][data-variant="multipart"]')
    await expect(panel).to_be_visible()
    await shot(page, "workflow-publish-get-code")
    code = await panel.locator("pre").inner_text()

    # The copied Python snippet runs unchanged with the person's key and its placeholder
    # files (`./sheet.csv`, `./notes.txt`).
    (tmp_path / "notes.txt").write_text("checked by Ann")
    token = await create_key(page, stack, "snippet")
    (tmp_path / "snippet.py").write_text(code)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "snippet.py",
        cwd=tmp_path,
        env={**os.environ, "WEFT_API_KEY": token, "WEFT_BASE_URL": stack.base_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert '"status": "completed"' in out.decode(), out.decode()

    # The runs list filters by workflow and links to the run pages.
    await page.goto(f"{stack.base_url}/app/runs?workflow_id={workflow_id}")
    # The Run panel's run and the snippet's, both done.
    await expect(page.locator("tbody tr")).to_have_count(2)
    await expect(page.locator("tbody .badge.completed")).to_have_count(2)
    await shot(page, "runs")
    await page.goto(f"{stack.base_url}/app/workflows")
    await expect(page.locator("tbody")).to_contain_text("Timesheet totals")
    await shot(page, "workflows")


async def test_approve_a_human_review(page: Page, stack: Any) -> None:
    workflow_id = await create_workflow(page, stack, review_workflow(f"rev-{uuid.uuid4().hex[:8]}"))
    await page.get_by_role("button", name="Publish the draft as version 1").click()
    await page.get_by_label("input_text").fill("ship it on Monday")
    await page.get_by_role("button", name="Run", exact=True).click()
    await page.wait_for_url(f"**/app/workflows/{workflow_id}/runs/run_*")
    await expect(page.locator("#run-status")).to_have_text("awaiting_input", timeout=60_000)
    await expect(page.locator(".review")).to_contain_text("Draft: ship it on Monday")
    await shot(page, "run-review")
    await page.get_by_label("edited").fill("Ship it on Tuesday.")
    await page.get_by_role("button", name="Submit review").click()
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=60_000)
    await expect(page.locator("#run-result")).to_contain_text("Ship it on Tuesday.")
    await expect(page.locator("#run-result")).to_contain_text('"approved": true')


LLM_WORKFLOW = """\
slug: {slug}
name: Echo
stages:
  - id: echo
    type: llm
    model: fake:echo
    prompt: "Say: {{{{ input_text }}}}"
    max_tokens: 50
"""


async def test_usage_shows_the_ledger(page: Page, stack: Any) -> None:
    # A priced LLM run: its reservation and capture reach the ledger.
    await create_workflow(page, stack, LLM_WORKFLOW.format(slug=f"echo-{uuid.uuid4().hex[:8]}"))
    await page.get_by_label("input_text").fill("hello there " * 50)
    await page.get_by_role("button", name="Run", exact=True).click()
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=60_000)
    await expect(page.locator("#timeline")).to_contain_text("fake:echo")
    # Billing captures a finished run's cost from its events, a moment after it ends.
    ledger = page.locator("#ledger")
    for _ in range(60):
        await page.goto(f"{stack.base_url}/app/usage")
        if "capture" in await ledger.inner_text():
            break
        await asyncio.sleep(0.5)
    for kind in ("grant", "reserve", "capture"):
        await expect(ledger).to_contain_text(kind)
    await expect(ledger).to_contain_text("$100.0000")
    await expect(page.locator("svg.chart rect")).to_have_count(1)
    await expect(page.locator("#balance")).to_contain_text("Available")
    await shot(page, "usage")


async def test_another_accounts_run_is_404(page: Page, stack: Any, http: Any) -> None:
    other = create_account(stack)
    workflow_id = await apply_workflow(stack, [{"id": "t", "type": "template", "template": "x"}])
    run = await create_run(http, stack, other, workflow_id)
    response = await page.goto(run["links"]["app"])
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    await shot(page, "not-found")
    # A signed-out browser is sent to sign in first, then comes back to the page.
    context = await page.context.browser.new_context()  # type: ignore[union-attr]
    anonymous = await context.new_page()
    await anonymous.goto(run["links"]["app"])
    assert "/app/login?next=" in anonymous.url
    await context.close()


async def test_versions_and_their_diffs(page: Page, stack: Any) -> None:
    slug = f"ver-{uuid.uuid4().hex[:8]}"
    definition = LLM_WORKFLOW.format(slug=slug)
    workflow_id = await create_workflow(page, stack, definition)
    await page.get_by_role("button", name="Publish the draft as version 1").click()
    await page.get_by_role("link", name="Edit draft").click()
    text = await page.get_by_label("Definition").input_value()
    await page.get_by_label("Definition").fill(text.replace("max_tokens: 50", "max_tokens: 80"))
    await page.get_by_role("button", name="Save draft").click()
    await page.wait_for_url(f"**/app/workflows/{workflow_id}")
    draft = page.locator("#diff-draft")
    await draft.locator("summary").click()
    await expect(draft).to_contain_text("-    max_tokens: 50")
    await expect(draft).to_contain_text("+    max_tokens: 80")
    await page.get_by_role("button", name="Publish the draft as version 2").click()
    await expect(page.locator("#wf-version")).to_have_text("v2")
    await page.locator("#diff-v2 summary").click()
    await expect(page.locator("#diff-v2")).to_contain_text("+    max_tokens: 80")
    await shot(page, "workflow-versions")


async def test_pages_fit_a_narrow_screen(page: Page, stack: Any) -> None:
    """On a phone-sized screen no page scrolls sideways (wide tables scroll in place)."""
    await page.set_viewport_size({"width": 380, "height": 800})
    try:
        for path in ("/app/runs", "/app/workflows", "/app/settings/keys", "/app/usage"):
            await page.goto(f"{stack.base_url}{path}")
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 380, (path, width)
        await page.goto(f"{stack.base_url}/app/runs")
        await shot(page, "narrow-runs")
    finally:
        await page.set_viewport_size({"width": 1200, "height": 900})


async def test_a_running_run_is_followed_live(page: Page, stack: Any) -> None:
    """The run page of a slow run follows its events over SSE until it completes."""
    await create_workflow(page, stack, LLM_WORKFLOW.format(slug=f"slow-{uuid.uuid4().hex[:8]}"))
    streams: list[str] = []
    page.on(
        "request",
        lambda r: (
            streams.append(r.url) if r.url.endswith("/events") or "/events?" in r.url else None
        ),
    )
    await page.get_by_label("input_text").fill("[[sleep:4]] take your time")
    await page.get_by_role("button", name="Run", exact=True).click()
    await page.wait_for_url("**/runs/run_*")
    await expect(page.locator("#run-status")).to_have_text("running", timeout=10_000)
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=60_000)
    await expect(page.locator("#timeline")).to_contain_text("fake:echo")
    assert any("/events?last_event_id=" in url for url in streams), streams
