"""http stages through the real worker: allowlisted calls work, internal ones are refused.

The test stack allowlists 127.0.0.1 (WEFT_HTTP_STAGE_ALLOWLIST), so 127.0.0.2 (also
loopback) and the link-local metadata address must still be refused.
"""

from typing import Any

import aiohttp
import pytest

from tests.support.runs import Account, apply_workflow, create_run, wait_for

pytestmark = pytest.mark.timeout(120)


def fake_llm_base(stack: Any) -> str:
    return str(stack.env["WEFT_LLM_FAKE_BASE_URL"]).removesuffix("/v1")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:{port}/health",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/health",
        "http://10.0.0.1/",
    ],
)
async def test_internal_addresses_are_refused(
    stack: Any, account: Account, http: aiohttp.ClientSession, url: str
) -> None:
    port = fake_llm_base(stack).rsplit(":", 1)[1]
    workflow_id = await apply_workflow(
        stack, [{"id": "call", "type": "http", "url": url.format(port=port)}]
    )
    created = await create_run(http, stack, account, workflow_id)
    run = await wait_for(http, stack, account, created["id"])
    assert run["status"] == "failed"
    assert run["error"]["code"] == "SSRF_REFUSED"
    assert run["error"]["stage"] == "call"
    assert "not allowed" in run["error"]["message"]


async def test_allowlisted_host_is_called_and_its_json_is_the_output(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(
        stack,
        [
            {
                "id": "call",
                "type": "http",
                "method": "POST",
                "url": fake_llm_base(stack) + "/v1/chat/completions",
                "headers": {"Content-Type": "application/json"},
                "body": '{"messages": [{"role": "user", "content": '
                '{{ ("[[reply:" ~ input_text ~ "]]") | tojson }}}]}',
            },
            {
                "id": "pick",
                "type": "template",
                "template": "{{ stages.call.status }} "
                "{{ stages.call.body.choices[0].message.content }}",
            },
        ],
    )
    created = await create_run(http, stack, account, workflow_id, "pong")
    run = await wait_for(http, stack, account, created["id"])
    assert run["status"] == "completed", run
    assert run["result"] == "200 pong"


async def test_non_2xx_answer_fails_the_stage(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(
        stack, [{"id": "call", "type": "http", "url": fake_llm_base(stack) + "/missing"}]
    )
    created = await create_run(http, stack, account, workflow_id)
    run = await wait_for(http, stack, account, created["id"])
    assert run["status"] == "failed"
    assert run["error"]["code"] == "HTTP_ERROR" and "HTTP 404" in run["error"]["message"]
