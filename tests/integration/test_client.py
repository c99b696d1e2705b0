"""weft_client and the `weft` CLI against the live stack."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.runs import Account, apply_workflow
from weft_client import AsyncWeft, BadRequestError, NotFoundError, Weft

TEMPLATE = '{{ {"input": input_text, "count": params.count, "doc": params.get("doc")} | tojson }}'
FIELDS = [
    {"name": "count", "type": "integer", "required": True},
    {"name": "doc", "type": "file"},
]


@pytest.fixture(scope="module")
async def workflow_id(stack: Any) -> str:
    return await apply_workflow(
        stack,
        [{"id": "echo", "type": "template", "output": "json", "template": TEMPLATE}],
        fields=FIELDS,
    )


async def test_async_client_create_wait_upload_and_replay(
    stack: Any, account: Account, workflow_id: str, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("some notes\n")
    async with AsyncWeft(account.token, stack.base_url) as weft:
        att = await weft.attachments.upload(notes)
        assert att["id"].startswith("att_") and att["kind"] == "txt"
        run = await weft.runs.create(
            workflow_id, "hello", params={"count": 2, "doc": att["id"]}, idempotency_key="k-1"
        )
        again = await weft.runs.create(
            workflow_id, "hello", params={"count": 2, "doc": att["id"]}, idempotency_key="k-1"
        )
        assert again["id"] == run["id"]  # replayed, not a second run
        done = await weft.runs.wait(run["id"], timeout=120)
        assert done["status"] == "completed"
        assert done["result"] == {"input": "hello", "count": 2, "doc": att["id"]}
        listed = await weft.workflows.list(limit=100)
        assert workflow_id in {w["id"] for w in listed["data"]}
        with pytest.raises(BadRequestError) as caught:
            await weft.runs.create(workflow_id, "x", params={"count": "two"})
        assert caught.value.param == "params.count"
        assert caught.value.request_id and caught.value.request_id.startswith("req_")


async def test_sync_client(stack: Any, account: Account, workflow_id: str) -> None:
    def use() -> dict[str, Any]:
        with Weft(account.token, stack.base_url) as weft:
            with pytest.raises(NotFoundError) as caught:
                weft.runs.get("run_doesnotexist")
            assert caught.value.code == "NOT_FOUND"
            run = weft.runs.create(workflow_id, "sync", params={"count": 5})
            result: dict[str, Any] = weft.runs.wait(run["id"], timeout=120)
            return result

    done = await asyncio.to_thread(use)
    assert done["status"] == "completed" and done["result"]["count"] == 5


def _weft(stack: Any, account: Account, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WEFT_API_KEY": account.token, "WEFT_BASE_URL": stack.base_url}
    return subprocess.run(
        [sys.executable, "-m", "weft_client.cli", *args],
        env=env,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_cli_uploads_runs_and_waits_with_progress(
    stack: Any, account: Account, workflow_id: str, tmp_path: Path
) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("a document\n")
    extra = tmp_path / "extra.md"
    extra.write_text("# extra\n")
    done = await asyncio.to_thread(
        _weft, stack, account, "run", workflow_id, "--input", "from cli",
        "--param", "count=3", "--file", f"doc={doc}", "--attach", str(extra), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "completed"
    assert run["result"]["count"] == 3 and run["result"]["doc"].startswith("att_")
    assert "uploaded" in done.stderr and f"run {run['id']}: completed" in done.stderr
    # Stages shown live from the SSE stream (a template stage: started, then completed).
    assert "> stage echo started" in done.stderr, done.stderr
    assert "+ stage echo completed" in done.stderr, done.stderr

    got = await asyncio.to_thread(_weft, stack, account, "runs", "get", run["id"], cwd=tmp_path)
    assert json.loads(got.stdout)["id"] == run["id"]
    listed = await asyncio.to_thread(_weft, stack, account, "workflows", "list", cwd=tmp_path)
    assert workflow_id in {w["id"] for w in json.loads(listed.stdout)["data"]}
    bad = await asyncio.to_thread(
        _weft, stack, account, "run", workflow_id, "--input", "x", "--param", "count=x",
        cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode == 1 and "INVALID_PARAM" in bad.stderr
