"""GET /api/v1/workflows/:id/code against the live stack: the curl, Python, Node and Go
snippets run UNCHANGED (only WEFT_API_KEY set) and print a completed run; PHP passes
`php -l`. A public endpoint's snippets run the same way WITHOUT WEFT_API_KEY (JSON, and
multipart with a file part). Missing toolchains (go, php) are installed from Debian apt
in a fixture."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
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


def _run(args: list[str], cwd: Path, token: str | None) -> dict[str, Any]:
    """Runs a snippet with only PATH, HOME, GOCACHE and (unless None) WEFT_API_KEY set."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "GOCACHE": str(cwd / ".gocache"),
    }
    if token is not None:
        env["WEFT_API_KEY"] = token
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


# Public endpoints: keyless snippets (no WEFT_API_KEY anywhere in their environment).
_FILES = {"curl": "run.sh", "python": "run.py", "node": "run.js", "go": "main.go"}


def _command(language: str, request: pytest.FixtureRequest) -> list[str]:
    """How a snippet file runs (installing go or node when missing)."""
    if language == "go":
        return [request.getfixturevalue("go_bin"), "run", "main.go"]
    if language == "node":
        return [shutil.which("node") or _apt_install("node", "nodejs"), "run.js"]
    return {"curl": ["bash", "run.sh"], "python": [sys.executable, "run.py"]}[language]


# Room for every snippet of the module from one client address (the default is 10/min).
_PUBLIC = {"auth": "public", "rate_limit": {"per_ip_per_minute": 1000, "per_minute": 1000}}
_DOC_FIELD = {"name": "doc", "type": "file", "required": True}


async def _publish(
    stack: Any, owner: Account, fields: list[dict[str, Any]], template: str
) -> tuple[str, str]:
    """A workflow of `owner` with a published public endpoint: (id, slug)."""
    slug = f"snip-{uuid.uuid4().hex[:10]}"
    definition = {
        "name": "Snippet echo",
        "fields": fields,
        "stages": [{"id": "echo", "type": "template", "output": "json", "template": template}],
        "endpoint": {"slug": slug, **_PUBLIC},
    }
    base = f"{stack.base_url}/api/v1/workflows"
    async with aiohttp.ClientSession(headers=owner.headers) as http:
        async with http.post(base, json=definition) as response:
            created = await response.json()
            assert response.status == 201, created
        workflow_id = created["data"]["id"]
        async with http.post(f"{base}/{workflow_id}/publish") as response:
            assert response.status == 201, await response.text()
    return workflow_id, slug


@pytest.fixture(scope="module")
async def public_json(stack: Any, account: Account) -> tuple[str, str]:
    return await _publish(stack, account, FIELDS, TEMPLATE)


@pytest.fixture(scope="module")
async def public_file(stack: Any, account: Account) -> tuple[str, str]:
    template = TEMPLATE.replace(
        '"title": params.title}', '"title": params.title, "doc": params.doc}'
    )
    return await _publish(stack, account, [*FIELDS, _DOC_FIELD], template)


async def _owner_sees(stack: Any, account: Account, run_id: str) -> None:
    """A keyless run is the owner's: their key reads it."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{stack.base_url}/api/v1/workflow-runs/{run_id}", headers=account.headers
        ) as response,
    ):
        body = await response.json()
    assert response.status == 200 and body["data"]["status"] == "completed", body


@pytest.mark.parametrize("language", list(_FILES))
async def test_keyless_json_snippets_run_without_an_api_key(
    stack: Any,
    account: Account,
    public_json: tuple[str, str],
    tmp_path: Path,
    language: str,
    request: pytest.FixtureRequest,
) -> None:
    workflow_id, slug = public_json
    status, body = await _code(stack, account.token, workflow_id, language=language)
    assert status == 200, body
    [snippet] = body["data"]
    assert (snippet["variant"], snippet["auth"]) == ("json", "none")
    code = snippet["code"]
    assert f"{stack.base_url}" in code and f"/api/v1/endpoints/{slug}" in code
    assert "WEFT_API_KEY" not in code
    (tmp_path / _FILES[language]).write_text(code)
    run = await asyncio.to_thread(_run, _command(language, request), tmp_path, None)
    _check_completed(run)
    assert run["workflow_id"] == workflow_id and "run_token" not in run
    assert run["links"]["self"].endswith(f"/api/v1/endpoints/{slug}/runs/{run['id']}")
    await _owner_sees(stack, account, run["id"])


@pytest.mark.parametrize("language", list(_FILES))
async def test_keyless_multipart_snippets_send_the_file_as_a_part(
    stack: Any,
    account: Account,
    public_file: tuple[str, str],
    tmp_path: Path,
    language: str,
    request: pytest.FixtureRequest,
) -> None:
    workflow_id, slug = public_file
    # With a file field, keyless code is multipart only (a stranger cannot name ids).
    status, body = await _code(stack, account.token, workflow_id, language=language)
    assert status == 200, body
    [snippet] = body["data"]
    assert (snippet["variant"], snippet["auth"]) == ("multipart", "none")
    assert f"/api/v1/endpoints/{slug}" in snippet["code"]
    assert "/api/v1/attachments" not in snippet["code"]
    (tmp_path / "doc.pdf").write_bytes(_PDF)
    (tmp_path / _FILES[language]).write_text(snippet["code"])
    run = await asyncio.to_thread(_run, _command(language, request), tmp_path, None)
    _check_completed(run)
    assert str(run["result"]["doc"]).startswith("att_") and "run_token" not in run


async def test_keyless_php_snippets_pass_php_lint(
    stack: Any, account: Account, public_file: tuple[str, str], tmp_path: Path, php_bin: str
) -> None:
    status, body = await _code(stack, account.token, public_file[0], language="php")
    assert status == 200, body
    [snippet] = body["data"]
    assert snippet["auth"] == "none" and "withToken($apiKey)" not in snippet["code"]
    (tmp_path / "run.php").write_text(snippet["code"])
    done = await asyncio.to_thread(
        subprocess.run, [php_bin, "-l", "run.php"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_auth_chooses_the_form_and_is_validated(
    stack: Any,
    account: Account,
    workflow_id: str,
    public_json: tuple[str, str],
    public_file: tuple[str, str],
) -> None:
    # The owner may still ask for code that sends the key.
    status, body = await _code(stack, account.token, public_json[0], language="curl", auth="key")
    assert status == 200, body
    [snippet] = body["data"]
    assert snippet["auth"] == "key" and "WEFT_API_KEY" in snippet["code"]
    assert f"/api/v1/workflows/{public_json[0]}/runs" in snippet["code"]
    status, body = await _code(stack, account.token, public_file[0], auth="key")
    assert status == 200
    assert {(s["variant"], s["auth"]) for s in body["data"]} == {
        ("json", "key"),
        ("multipart", "key"),
    }
    # Keyless code for an endpoint that needs a key, an unknown auth, keyless JSON with a
    # file field: 400 naming the parameter.
    for wf, query, param in (
        (workflow_id, {"auth": "none"}, "auth"),
        (public_json[0], {"auth": "anonymous"}, "auth"),
        (public_file[0], {"variant": "json"}, "variant"),
        (public_file[0], {"variant": "json", "auth": "none"}, "variant"),
    ):
        status, body = await _code(stack, account.token, wf, **query)
        assert status == 400, (query, body)
        assert (body["error"]["code"], body["error"]["param"]) == ("INVALID_PARAM", param)
    status, body = await _code(
        stack, account.token, public_file[0], variant="json", auth="key", language="go"
    )
    assert status == 200 and body["data"][0]["auth"] == "key"
