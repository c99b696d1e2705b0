"""Runs that use attachments (issue 5): an uploaded CSV's extracted text reaches an llm
stage's prompt, with its file name and kind; another account's attachment is a 404."""

import json
import uuid
from typing import Any

import aiohttp
import grpc
import pytest

from devstack.stack import Stack
from tests.integration.attachments_support import form
from tests.support import storage_files as files
from tests.support.runs import (
    Account,
    apply_workflow,
    create_account,
    create_run,
    create_user,
    fake_llm_calls,
    runs_db,
    wait_for,
)
from weft.runs.v1 import runs_pb2, runs_pb2_grpc
from weftcore.errors import from_rpc_error


async def upload(
    http: aiohttp.ClientSession, stack: Stack, account: Account, filename: str, data: bytes
) -> dict[str, Any]:
    async with http.post(
        f"{stack.base_url}/api/v1/attachments", data=form(filename, data), headers=account.headers
    ) as response:
        body = await response.json()
        assert response.status == 201, body
        return dict(body["data"])


async def summary_workflow(stack: Stack, tag: str) -> str:
    return await apply_workflow(
        stack,
        [
            {
                "id": "summarize",
                "type": "llm",
                "model": "fake:echo",
                "max_tokens": 64,
                # The fake LLM answers {"echo": "<this prompt>"}: the answer shows the prompt.
                "prompt": "[[tag:" + tag + "]] {{ input_text }}\n\n{{ attachments_text }}",
            }
        ],
    )


async def test_a_run_summarises_an_uploaded_csv(stack: Stack, http: aiohttp.ClientSession) -> None:
    account = create_account(stack)
    attachment = await upload(http, stack, account, "sales.csv", files.csv_bytes(40))
    assert (attachment["kind"], attachment["extraction_status"]) == ("csv", "extracted")
    tag = f"csv-{uuid.uuid4().hex[:8]}"
    workflow_id = await summary_workflow(stack, tag)

    created = await create_run(
        http,
        stack,
        account,
        workflow_id,
        "Summarise the sales in this CSV.",
        attachment_ids=[attachment["id"]],
    )
    run = await wait_for(http, stack, account, created["id"])

    assert run["status"] == "completed", run
    prompt = json.loads(run["result"])["echo"]
    assert prompt.startswith(f"[[tag:{tag}]] Summarise the sales in this CSV.")
    # The extracted text, under a heading with the file's name and kind.
    assert "--- sales.csv (csv) ---\nid,name,amount\n1,name 1,1.50\n" in prompt
    assert "40,name 40,60.00" in prompt
    assert (await fake_llm_calls(stack))[tag] == 1
    (stage,) = run["cost_breakdown"]
    assert (stage["stage"], stage["model"]) == ("summarize", "fake:echo")
    # The fake counts words as tokens: the 41 CSV lines are part of the input.
    assert stage["input_tokens"] > 41 * 2
    assert stage["cost_cents"] >= 1 and run["cost_cents"] >= stage["cost_cents"]


async def test_another_accounts_attachment_is_not_found(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    owner, stranger = create_account(stack), create_account(stack)
    theirs = await upload(http, stack, stranger, "private.csv", files.csv_bytes(3))
    workflow_id = await summary_workflow(stack, f"nf-{uuid.uuid4().hex[:8]}")
    url = f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs"

    for ids in ([theirs["id"]], ["att_01doesnotexist0000000000000"]):
        body = {"input_text": "Summarise.", "attachment_ids": ids}
        async with http.post(url, json=body, headers=owner.headers) as response:
            answer = await response.json()
            assert response.status == 404, answer
            assert answer["error"]["code"] == "NOT_FOUND"
            assert answer["error"]["param"] == "attachment_ids[0]"

    conn = await runs_db(stack)
    try:
        count = await conn.fetchval("SELECT count(*) FROM runs WHERE user_id = $1", owner.user_id)
    finally:
        await conn.close()
    assert count == 0  # refused before anything was created


async def test_a_free_plan_caller_over_grpc_gets_paid_plan_required(
    stack: Stack, runs: runs_pb2_grpc.RunsServiceStub
) -> None:
    # Internal callers reach the runs service without the gateway's plan check: the
    # service's own refusal must be the same public error, not an INTERNAL one.
    free = create_user(stack, plan="free")
    workflow_id = await summary_workflow(stack, f"free-{uuid.uuid4().hex[:8]}")
    request = runs_pb2.CreateRunRequest(
        caller=runs_pb2.Caller(user_id=free.user_id, plan="free"),
        workflow_id=workflow_id,
        input_text="Summarise.",
        attachment_ids=["att_01doesnotexist0000000000000"],
    )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await runs.CreateRun(request, timeout=10)

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert from_rpc_error(refused.value).code == "PAID_PLAN_REQUIRED"
