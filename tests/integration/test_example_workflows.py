"""The shipped example workflows, run by the real embedded model through the whole stack."""

import re

import aiohttp
import pytest

from devstack.stack import Stack
from tests.support.runs import create_account, create_run, wait_for

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
    summary = done["result"]["summary"]
    # Ann 3 + 2 = 5, Bob 4.5, everything 9.5 (Apollo 7.5, Zeus 2).
    assert {5.0, 4.5, 9.5} <= _numbers(summary), summary
    [stage] = done["cost_breakdown"]
    assert stage["model"] == "local:qwen2.5-coder-1.5b-instruct"
    assert stage["input_tokens"] > 0 and stage["output_tokens"] > 0
