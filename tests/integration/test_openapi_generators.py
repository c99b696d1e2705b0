"""Clients generated from the served OpenAPI document, against the live stack.

openapi-python-client (a dev dependency) and @hey-api/openapi-ts (npm, pinned in
tests/support/openapi_ts, installed with `npm ci` into .weft/openapi-ts/<lock hash>) must
generate without a single warning, and the generated code must round-trip the API:
typed workflows, runs, events and errors (tests/support/generated_clients/ and
tests/support/openapi_ts/roundtrip.ts). Skipped only when the npm registry is unreachable.
"""

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from devstack.stack import PROJECT_ROOT
from tests.support.npm import npm_packages
from tests.support.runs import Account, apply_workflow

SUPPORT = PROJECT_ROOT / "tests" / "support"
TS_SUPPORT = SUPPORT / "openapi_ts"
TS_FILES = ("package.json", "openapi-ts.config.mjs", "tsconfig.json", "roundtrip.ts")
FIELDS: list[dict[str, Any]] = [
    {"name": "count", "type": "integer", "required": True, "constraints": {"min": 1}},
    {"name": "tone", "type": "select", "constraints": {"options": ["formal", "casual"]}},
]
TEMPLATE = '{{ {"input": input_text, "count": params.count, "tone": params.tone} | tojson }}'
REVIEW: list[dict[str, Any]] = [
    {"id": "draft", "type": "template", "template": "draft: {{ input_text }}"},
    {
        "id": "review",
        "type": "human_review",
        "prompt": "OK?",
        "fields": [{"name": "approved", "type": "boolean", "required": True}],
    },
]
# What each generator prints when it skips or degrades part of the document.
WARNINGS = re.compile(r"warn|unable to|cannot|could not|error|❗|🚨|⚠", re.IGNORECASE)


async def _workflow(stack: Any) -> str:
    stages = [{"id": "echo", "type": "template", "output": "json", "template": TEMPLATE}]
    return await apply_workflow(stack, stages, fields=FIELDS)


async def _served_document(stack: Any, path: Path) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{stack.base_url}/api/v1/openapi.json") as response,
    ):
        assert response.status == 200
        path.write_bytes(await response.read())


async def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = await asyncio.to_thread(
        subprocess.run, args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{args[:3]} failed:\n{output[-6000:]}"
    return done.stdout


def _env(**extra: str) -> dict[str, str]:
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        **extra,
    }


# -- openapi-python-client -----------------------------------------------------------------


async def test_openapi_python_client_generates_cleanly_and_round_trips(
    stack: Any, account: Account, tmp_path: Path
) -> None:
    generator = Path(sys.executable).with_name("openapi-python-client")
    assert generator.exists(), "openapi-python-client missing: ./scripts/setup installs it"
    await _served_document(stack, tmp_path / "openapi.json")
    (tmp_path / "config.yml").write_text("package_name_override: weft_api\n")
    env = _env(WEFT_API_KEY=account.token)
    args = [str(generator), "generate", "--path", "openapi.json", "--meta", "none"]
    args += ["--config", "config.yml", "--output-path", "weft_api"]
    done = await asyncio.to_thread(
        subprocess.run, args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert not WARNINGS.search(output), output  # e.g. a schema it could not process
    models = {p.stem for p in (tmp_path / "weft_api" / "models").glob("*.py")}
    assert {"workflow", "field", "run", "run_completed_event", "error_code"} <= models

    workflow_id = await _workflow(stack)
    review_id = await apply_workflow(stack, REVIEW)
    shutil.copy(SUPPORT / "generated_clients" / "python_roundtrip.py", tmp_path)
    args = [sys.executable, "python_roundtrip.py", stack.base_url, workflow_id, review_id]
    summary = json.loads(await _run(args, tmp_path, env))
    assert summary["result"] == {"input": "from a generated client", "count": 3, "tone": "casual"}
    assert summary["events"][0] == "RunCreatedEvent"
    assert summary["events"][-1] == "RunCompletedEvent"
    assert "StageCompletedEvent" in summary["events"]
    assert summary["last_event_status"] == "completed"
    assert summary["review_status"] == "completed"
    assert "RunAwaitingInputEvent" in summary["review_events"]
    assert summary["error_codes"] == ["NOT_FOUND", "RUN_NOT_CANCELABLE", "RUN_NOT_AWAITING_INPUT"]


# -- @hey-api/openapi-ts --------------------------------------------------------------------


def _npm_packages() -> Path:
    """node_modules of tests/support/openapi_ts (tests/support/npm.py)."""
    return npm_packages(TS_SUPPORT, "openapi-ts")


async def test_hey_api_openapi_ts_generates_cleanly_type_checks_and_round_trips(
    stack: Any, account: Account, tmp_path: Path
) -> None:
    node_modules = await asyncio.to_thread(_npm_packages)
    work = tmp_path / "ts"
    work.mkdir()
    for name in TS_FILES:
        shutil.copy(TS_SUPPORT / name, work)
    (work / "node_modules").symlink_to(node_modules)
    await _served_document(stack, work / "openapi.json")
    env = _env(WEFT_API_KEY=account.token, NO_COLOR="1")

    tool = str(node_modules / "@hey-api" / "openapi-ts" / "bin" / "run.js")
    output = await _run(["node", tool, "-f", "openapi-ts.config.mjs"], work, env)
    assert not WARNINGS.search(output), output
    types = (work / "client" / "types.gen.ts").read_text()
    for name in ("Workflow", "Field", "Run", "RunEvent", "ErrorCode", "RunList", "WorkflowList"):
        assert re.search(rf"^export type {name} = ", types, re.MULTILINE), name
    assert "export type Webhooks = " in types

    # tsc --strict over the generated client and a script using its types; then run it.
    await _run(["node", str(node_modules / "typescript" / "bin" / "tsc"), "-p", "."], work, env)
    workflow_id = await _workflow(stack)
    out = await _run(["node", "dist/roundtrip.js", stack.base_url, workflow_id], work, env)
    summary = json.loads(out)
    assert summary["status"] == "completed"
    assert summary["result"] == {"input": "from TypeScript", "count": 5, "tone": "formal"}
    assert summary["events"][0] == "run.created"
    assert summary["events"][-1] == "run.completed"
    assert summary["lastStatus"] == "completed"
    assert summary["errorCodes"] == ["NOT_FOUND", "RUN_NOT_CANCELABLE"]
    assert summary["requestIdMatches"] is True
