"""Schemathesis against the live stack with a valid key: no 5xx, every answer's status
documented and its body valid against gateway/openapi.yaml. Bounded: a few examples per
operation, one worker, a fixed seed."""

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.runs import apply_workflow, create_account, create_run, wait_for

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"


async def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    stack: Any, tmp_path: Path
) -> None:
    account = create_account(stack)
    # Real objects, pinned as path parameters, so operations reach their logic (not only
    # 404s) and list/get answers carry objects whose schemas get checked.
    wf = await apply_workflow(
        stack,
        [{"id": "t", "type": "template", "template": "{{ input_text }}"}],
        fields=[{"name": "n", "type": "integer"}, {"name": "note", "type": "text"}],
    )
    async with aiohttp.ClientSession(headers=account.headers) as http:
        run = await create_run(http, stack, account, wf)
        await wait_for(http, stack, account, run["id"])
        async with http.get(f"{stack.base_url}/api/v1/workflows/{wf}") as response:
            slug = (await response.json())["data"]["slug"]
        form = aiohttp.FormData()
        form.add_field("file", b"hello", filename="a.txt", content_type="text/plain")
        async with http.post(f"{stack.base_url}/api/v1/attachments", data=form) as response:
            assert response.status == 201, await response.text()
            attachment = (await response.json())["data"]["id"]
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[parameters]\n"
        f'"path.workflow_id" = "{wf}"\n'
        f'"path.run_id" = "{run["id"]}"\n'
        f'"path.slug" = "{slug}"\n'
        f'"path.attachment_id" = "{attachment}"\n'
    )
    args = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
        f"{stack.base_url}/api/v1/openapi.json",
        "--checks", CHECKS,
        "--max-examples", "12",
        "--mode", "all",  # valid and invalid data
        "--phases", "examples,fuzzing",
        "--workers", "1",
        "--seed", "7",
        "--generation-database", "none",
        "--request-timeout", "90",
        "--header", f"Authorization: Bearer {account.token}",
        # Readiness under a loaded CI box may be 503 by design; it has nothing to fuzz.
        "--exclude-path", "/readyz",
        "--no-color",
        "--report-dir", str(tmp_path),
    ]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, args, capture_output=True, text=True, timeout=1200, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-3000:]
