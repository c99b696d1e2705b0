"""GET /api/v1/workflows/:id/code against the live stack: the curl, Python, Node and Go
snippets run UNCHANGED (only WEFT_API_KEY set) and print a completed run; PHP passes
`php -l`. Missing toolchains (go, php) are installed from Debian apt in a fixture."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.runs import Account, apply_workflow

FIELDS: list[dict[str, Any]] = [
    {"name": "count", "type": "integer", "required": True, "constraints": {"min": 2}},
    {"name": "tone", "type": "select", "constraints": {"options": ["formal", "casual"]}},
    {"name": "ratio", "type": "number"},
    {"name": "flag", "type": "boolean"},
    {"name": "meta", "type": "json"},
    {"name": "title", "type": "text", "required": True},
]
# The template echoes every param, so the printed result shows what the snippet sent.
TEMPLATE = (
    '{{ {"input": input_text, "count": params.count, "tone": params.tone, '
    '"ratio": params.ratio, "flag": params.flag, "meta": params.meta, '
    '"title": params.title} | tojson }}'
)
EXPECTED_RESULT = {
    "count": 2,
    "tone": "formal",
    "ratio": 1.5,
    "flag": True,
    "meta": {"example": "value"},
    "title": "example title",
}


def _apt_install(tool: str, package: str) -> str:
    """The tool's path, installing its Debian package when missing (CI runs as root)."""
    found = shutil.which(tool)
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip(f"{tool} is missing and apt-get is unavailable to install {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", package],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:  # a stale package index: refresh once, then retry
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", package],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    found = shutil.which(tool)
    assert found, f"apt-get install {package} failed: {done.stderr[-2000:]}"
    return found


@pytest.fixture(scope="session")
def go_bin() -> str:
    return _apt_install("go", "golang-go")


@pytest.fixture(scope="session")
def php_bin() -> str:
    return _apt_install("php", "php-cli")


@pytest.fixture(scope="module")
async def workflow_id(stack: Any) -> str:
    return await apply_workflow(
        stack,
        [{"id": "echo", "type": "template", "output": "json", "template": TEMPLATE}],
        fields=FIELDS,
    )


async def _code(stack: Any, token: str, workflow_id: str, **query: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{stack.base_url}/api/v1/workflows/{workflow_id}/code",
            params=query,
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        return response.status, await response.json()


async def _snippet(stack: Any, account: Account, workflow_id: str, language: str) -> str:
    status, body = await _code(stack, account.token, workflow_id, language=language)
    assert status == 200, body
    [snippet] = body["data"]
    assert (snippet["language"], snippet["variant"]) == (language, "json")
    assert stack.base_url in snippet["code"]
    return str(snippet["code"])


def _run(args: list[str], cwd: Path, token: str) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "GOCACHE": str(cwd / ".gocache"),
        "WEFT_API_KEY": token,
    }
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    run: dict[str, Any] = json.loads(done.stdout)
    return run


def _check_completed(run: dict[str, Any]) -> None:
    assert run["status"] == "completed", run
    assert run["id"].startswith("run_")
    assert run["result"]["input"]
    assert {k: run["result"][k] for k in EXPECTED_RESULT} == EXPECTED_RESULT


async def test_curl_snippet_runs_unchanged(
    stack: Any, account: Account, workflow_id: str, tmp_path: Path
) -> None:
    (tmp_path / "run.sh").write_text(await _snippet(stack, account, workflow_id, "curl"))
    _check_completed(await asyncio.to_thread(_run, ["bash", "run.sh"], tmp_path, account.token))


async def test_python_snippet_runs_unchanged(
    stack: Any, account: Account, workflow_id: str, tmp_path: Path
) -> None:
    (tmp_path / "run.py").write_text(await _snippet(stack, account, workflow_id, "python"))
    _check_completed(
        await asyncio.to_thread(_run, [sys.executable, "run.py"], tmp_path, account.token)
    )


async def test_node_snippet_runs_unchanged(
    stack: Any, account: Account, workflow_id: str, tmp_path: Path
) -> None:
    node = shutil.which("node") or _apt_install("node", "nodejs")
    (tmp_path / "run.js").write_text(await _snippet(stack, account, workflow_id, "node"))
    _check_completed(await asyncio.to_thread(_run, [node, "run.js"], tmp_path, account.token))


async def test_go_snippet_runs_unchanged(
    stack: Any, account: Account, workflow_id: str, tmp_path: Path, go_bin: str
) -> None:
    (tmp_path / "main.go").write_text(await _snippet(stack, account, workflow_id, "go"))
    _check_completed(
        await asyncio.to_thread(_run, [go_bin, "run", "main.go"], tmp_path, account.token)
    )


async def test_php_snippet_passes_php_lint(
    stack: Any, account: Account, workflow_id: str, tmp_path: Path, php_bin: str
) -> None:
    (tmp_path / "run.php").write_text(await _snippet(stack, account, workflow_id, "php"))
    done = await asyncio.to_thread(
        subprocess.run, [php_bin, "-l", "run.php"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_all_languages_by_default_and_multipart_on_request(
    stack: Any, account: Account, workflow_id: str
) -> None:
    status, body = await _code(stack, account.token, workflow_id)
    assert status == 200
    assert [(s["language"], s["variant"]) for s in body["data"]] == [
        (lang, "json") for lang in ("curl", "node", "python", "php", "go")
    ]
    status, body = await _code(stack, account.token, workflow_id, variant="multipart")
    assert status == 200 and {s["variant"] for s in body["data"]} == {"multipart"}


async def test_bad_language_scope_and_allowlist(
    stack: Any, account: Account, workflow_id: str
) -> None:
    status, body = await _code(stack, account.token, workflow_id, language="cobol")
    assert (status, body["error"]["param"]) == (400, "language")
    runs_only = json.loads(
        stack.admin(
            "keys",
            "create",
            "--user",
            account.user_id,
            "--name",
            "r",
            "--scopes",
            "workflow_runs:create",
        ).stdout
    )["secret"]
    status, body = await _code(stack, runs_only, workflow_id)
    assert (status, body["error"]["code"]) == (403, "MISSING_SCOPE")
    other = json.loads(
        stack.admin(
            "keys",
            "create",
            "--user",
            account.user_id,
            "--name",
            "a",
            "--allowlist",
            "wf_someotherworkflow",
        ).stdout
    )["secret"]
    status, body = await _code(stack, other, workflow_id)
    assert (status, body["error"]["code"]) == (404, "NOT_FOUND")
    status, body = await _code(stack, account.token, "wf_doesnotexist")
    assert (status, body["error"]["code"]) == (404, "NOT_FOUND")


# A minimal valid one-page PDF, for the `./doc.pdf` placeholder of file fields.
_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


@pytest.fixture(scope="module")
async def file_workflow_id(stack: Any) -> str:
    template = '{{ {"count": params.count, "doc": params.doc} | tojson }}'
    return await apply_workflow(
        stack,
        [{"id": "echo", "type": "template", "output": "json", "template": template}],
        fields=[
            {"name": "count", "type": "integer", "required": True},
            {"name": "doc", "type": "file", "required": True},
        ],
    )


@pytest.mark.parametrize("variant", ["json", "multipart"])
@pytest.mark.parametrize("language", ["curl", "python", "node"])
async def test_file_field_snippets_upload_and_run(
    stack: Any,
    account: Account,
    file_workflow_id: str,
    tmp_path: Path,
    language: str,
    variant: str,
) -> None:
    status, body = await _code(
        stack, account.token, file_workflow_id, language=language, variant=variant
    )
    assert status == 200, body
    code = body["data"][0]["code"]
    assert "./doc.pdf" in code
    (tmp_path / "doc.pdf").write_bytes(_PDF)
    file, command = {
        "curl": ("run.sh", ["bash", "run.sh"]),
        "python": ("run.py", [sys.executable, "run.py"]),
        "node": ("run.js", [shutil.which("node") or "node", "run.js"]),
    }[language]
    (tmp_path / file).write_text(code)
    run = await asyncio.to_thread(_run, command, tmp_path, account.token)
    assert run["status"] == "completed", run
    assert run["result"]["count"] == 1
    assert str(run["result"]["doc"]).startswith("att_")
