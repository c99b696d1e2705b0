"""multipart/form-data on POST /api/v1/workflows/:id/runs through the real stack."""

import uuid
from typing import Any

import aiohttp
import pytest

from tests.integration.test_endpoints import FIELDS, STAGES, form, post
from tests.support.runs import Account, apply_workflow, wait_for

pytestmark = pytest.mark.timeout(120)


async def test_multipart_run_binds_fields_and_files(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(stack, STAGES, fields=FIELDS)
    status, body, headers = await post(
        http,
        f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs",
        account,
        data=form(
            {"input_text": "summarise", "topic": "moles", "n": "7"},
            {"doc": ("d.txt", b"digging"), "notes": ("n.md", b"# tunnels")},
        ),
    )
    assert status == 201, body
    assert "RateLimit-Remaining" in headers
    run = await wait_for(http, stack, account, body["data"]["id"])
    assert run["status"] == "completed", run["error"]
    result = run["result"]
    assert (result["input"], result["topic"], result["n"]) == ("summarise", "moles", 7)
    assert result["doc"].startswith("att_")
    assert sorted(result["files"]) == ["d.txt", "n.md"]


async def test_multipart_run_validation_and_media_types(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(stack, STAGES, fields=FIELDS)
    url = f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs"
    status, body, _ = await post(http, url, account, data=form({"topic": "x"}, {}))
    assert status == 400 and body["error"]["param"] == "input_text", body
    status, body, _ = await post(http, url, account, data=form({"input_text": "hi", "n": "1"}, {}))
    assert status == 400 and body["error"]["code"] == "MISSING_PARAM", body
    assert body["error"]["param"] == "params.topic"
    status, body, _ = await post(
        http,
        url,
        account,
        data=form({"input_text": "hi", "topic": "x"}, {"doc": ("x.bin", b"\x00\x01\x02" * 50)}),
    )
    assert status == 415 and body["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE", body
    status, body, _ = await post(
        http,
        f"{stack.base_url}/api/v1/workflows/wf_{uuid.uuid4().hex[:20]}/runs",
        account,
        data=form({"input_text": "hi"}, {}),
    )
    assert status == 404, body
