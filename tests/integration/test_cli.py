"""The `weft` command (weftapi's CLI) as a subprocess against the live stack: progress,
tables, human review, and one exit code per outcome (docs/clients.md), Ctrl-C included."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from weftapi import Weft

from devstack.ports import free_port
from tests.integration.test_client import FIELDS, REVIEW, TEMPLATE
from tests.support.runs import Account, apply_workflow

pytestmark = pytest.mark.timeout(180)

WEFT = [sys.executable, "-m", "weftapi.cli"]


@pytest.fixture(scope="module")
async def workflow_id(stack: Any) -> str:
    return await apply_workflow(
        stack,
        [{"id": "echo", "type": "template", "output": "json", "template": TEMPLATE}],
        fields=FIELDS,
    )


@pytest.fixture(scope="module")
async def review_id(stack: Any) -> str:
    return await apply_workflow(stack, REVIEW)


@pytest.fixture(scope="module")
async def broken_id(stack: Any) -> str:
    return await apply_workflow(
        stack, [{"id": "broken", "type": "template", "template": "{{ stages.nope.text }}"}]
    )


def env_for(stack: Any, account: Account | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEFT_")}
    if account is not None:
        env.update(WEFT_API_KEY=account.token, WEFT_BASE_URL=stack.base_url)
    return env


def weft(
    stack: Any, account: Account | None, *args: str, base_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = env_for(stack, account)
    if base_url:
        env["WEFT_BASE_URL"] = base_url
    return subprocess.run(
        [*WEFT, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_version_and_help_through_the_installed_script() -> None:
    script = Path(sys.executable).parent / "weft"
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("weft (weftapi) ")
    helped = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert "WEFT_API_KEY" in helped.stdout and "WEFT_BASE_URL" in helped.stdout
    assert "exit codes" in helped.stdout


def test_run_uploads_follows_stages_and_prints_the_run(
    stack: Any, account: Account, workflow_id: str, tmp_path: Path
) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("a document\n")
    extra = tmp_path / "extra.md"
    extra.write_text("# extra\n")
    done = weft(stack, account, "run", workflow_id, "--input", "from cli", "--param", "count=3",
                "--file", f"doc={doc}", "--attach", str(extra))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "completed"
    assert run["result"]["count"] == 3 and run["result"]["doc"].startswith("att_")
    assert "uploaded" in done.stderr and f"run {run['id']}: completed" in done.stderr
    assert "> stage echo started" in done.stderr, done.stderr
    assert "+ stage echo completed" in done.stderr, done.stderr

    got = weft(stack, account, "runs", "get", run["id"])
    assert got.returncode == 0 and json.loads(got.stdout)["id"] == run["id"]
    listed = weft(stack, account, "runs", "list", "--workflow", workflow_id)
    assert listed.returncode == 0 and run["id"] in listed.stdout and "completed" in listed.stdout
    assert "status" in listed.stdout  # the table's header
    as_json = weft(stack, account, "runs", "list", "--workflow", workflow_id, "--json")
    assert run["id"] in {r["id"] for r in json.loads(as_json.stdout)}
    flows = weft(stack, account, "workflows", "list")
    assert flows.returncode == 0 and workflow_id in flows.stdout


def test_exit_codes_failed_api_error_usage_and_no_server(
    stack: Any, account: Account, workflow_id: str, broken_id: str
) -> None:
    failed = weft(stack, account, "run", broken_id, "--input", "x")
    assert failed.returncode == 1, failed.stderr
    assert json.loads(failed.stdout)["status"] == "failed"
    assert "TEMPLATE_ERROR" in failed.stderr and "broken" in failed.stderr

    api = weft(stack, account, "run", workflow_id, "--input", "x", "--param", "count=x")
    assert api.returncode == 3, api.stderr
    assert "INVALID_PARAM" in api.stderr and "params.count" in api.stderr and "req_" in api.stderr
    missing = weft(stack, account, "runs", "get", "run_doesnotexist")
    assert missing.returncode == 3 and "NOT_FOUND" in missing.stderr

    usage = weft(stack, account, "run", workflow_id)  # --input missing
    assert usage.returncode == 2
    no_key = weft(stack, None, "me")
    assert no_key.returncode == 2 and "WEFT_API_KEY" in no_key.stderr

    url = f"http://127.0.0.1:{free_port()}"
    down = weft(stack, account, "me", base_url=url)
    assert down.returncode == 5
    assert f"cannot reach {url}: connection refused" in down.stderr
    assert "Traceback" not in down.stderr


def test_timeout_says_the_run_continues_and_review_is_answered(
    stack: Any, account: Account, review_id: str
) -> None:
    # Nobody answers the review within the timeout: exit 4, the run goes on.
    late = weft(stack, account, "run", review_id, "--input", "Ada", "--timeout", "3")
    assert late.returncode == 4, late.stderr
    run = json.loads(late.stdout)
    assert run["status"] in ("pending", "running", "awaiting_input")  # not terminal
    assert "continues on the server" in late.stderr
    assert f"weft runs follow {run['id']}" in late.stderr
    assert f"weft runs cancel {run['id']}" in late.stderr

    with Weft(account.token, stack.base_url) as client:  # a loaded machine may be slow
        for event in client.runs.events(run["id"]):
            if event.type == "run.awaiting_input":
                break
    shown = weft(stack, account, "runs", "get", run["id"])
    assert shown.returncode == 0
    assert "Approve the draft?" in shown.stderr and "Dear Ada, thanks." in shown.stderr
    assert f"weft runs input {run['id']} approved=" in shown.stderr

    answered = weft(stack, account, "runs", "input", run["id"], "approved=true", "--follow")
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["result"] == {
        "approved": True,
        "reply": "Dear Ada, thanks.",
    }
    again = weft(stack, account, "runs", "input", run["id"], "approved=false")
    assert again.returncode == 3 and "RUN_NOT_AWAITING_INPUT" in again.stderr


def test_ctrl_c_leaves_the_run_going_and_says_how_to_cancel(
    stack: Any, account: Account, review_id: str
) -> None:
    proc = subprocess.Popen(
        [*WEFT, "run", review_id, "--input", "Bob"],
        env=env_for(stack, account),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    waiting = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "awaits input" in line:
                waiting.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert waiting.wait(60), "".join(seen)  # following, the run waits for review
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    err = "".join(seen)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    run_id = next(w for w in err.split() if w.startswith("run_")).rstrip(":")
    assert "continues on the server" in err and f"weft runs cancel {run_id}" in err
    with Weft(account.token, stack.base_url) as client:
        assert client.runs.get(run_id).status == "awaiting_input"  # still going
        assert client.runs.cancel(run_id).status == "canceled"
