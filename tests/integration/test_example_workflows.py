"""The shipped example workflows, run by the real embedded model through the whole stack."""

import re

import aiohttp
import pytest

from devstack.stack import Stack
from tests.support.runs import create_account, create_run, post_run_action, wait_for

pytestmark = pytest.mark.llm

TIMESHEET = "name,project,hours\nAnn,Apollo,3\nBob,Apollo,4.5\nAnn,Zeus,2\n"


def _numbers(text: str) -> set[float]:
    return {float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)}


async def test_timesheet_summary_gets_the_totals_right(stack: Stack) -> None:
    if stack.llm is None:
        pytest.skip("the embedded model is not installed (./scripts/setup installs it)")
    account = create_account(stack)
    async with aiohttp.ClientSession() as http:
        run = await create_run(
            http,
            stack,
            account,
            "wf_timesheet_summary",
            "Summarise this timesheet.",
            params={"csv": TIMESHEET},
        )
        done = await wait_for(http, stack, account, run["id"], timeout=300)
    assert done["status"] == "completed", done["error"]
    # Computed by the table stage (exact), then put in words by the model.
    assert done["result"]["totals"] == [["Apollo", 7.5], ["Zeus", 2], ["TOTAL", 9.5]]
    summary = done["result"]["summary"]
    assert {7.5, 2.0, 9.5} <= _numbers(summary), summary
    [stage] = [s for s in done["cost_breakdown"] if s.get("model")]
    assert stage["model"] == "local:qwen2.5-coder-1.5b-instruct"
    assert stage["input_tokens"] > 0 and stage["output_tokens"] > 0


async def test_review_reply_waits_for_a_person_and_sends_the_approved_draft(
    stack: Stack,
) -> None:
    if stack.llm is None:
        pytest.skip("the embedded model is not installed (./scripts/setup installs it)")
    account = create_account(stack)
    async with aiohttp.ClientSession() as http:
        run = await create_run(
            http,
            stack,
            account,
            "wf_review_reply",
            "Where is my order? It was due on Monday.",
            params={"customer_name": "Ann"},
        )
        waiting = await wait_for(
            http, stack, account, run["id"], ("awaiting_input", "failed"), timeout=300
        )
        assert waiting["status"] == "awaiting_input", waiting["error"]
        request = waiting["human_input_request"]
        assert request["stage"] == "review"
        draft = request["context"]["draft"]
        assert draft.strip()
        # Only the required field: the optional `edited_reply` is left out.
        status, body = await post_run_action(
            http, stack, account, run["id"], "input", {"values": {"approved": True}}
        )
        assert status == 200, body
        done = await wait_for(http, stack, account, run["id"], timeout=120)
    assert done["status"] == "completed", done["error"]
    assert done["result"] == {"approved": True, "reply": draft, "customer_name": "Ann"}
