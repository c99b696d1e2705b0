"""GET /api/v1/workflows/:id/openapi.json against the live stack: a valid OpenAPI 3.1
document whose request schemas agree with the server, 404 like GET /workflows/:id, and a
client generated from it (openapi-python-client) that creates a run which completes."""

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
import schemathesis
from jsonschema import Draft202012Validator

from tests.support.runs import Account, admin_json, apply_workflow, wait_for

NAME = "Echo params"
FIELDS: list[dict[str, Any]] = [
    {"name": "count", "type": "integer", "required": True, "constraints": {"min": 2}},
    {"name": "tone", "type": "select", "constraints": {"options": ["formal", "casual"]}},
    {"name": "ratio", "type": "number", "default": 0.5},
    {"name": "flag", "type": "boolean"},
    {"name": "meta", "type": "json"},
    {"name": "title", "type": "text", "constraints": {"max_length": 20}},
    {"name": "doc", "type": "file"},
]
TEMPLATE = (
    '{{ {"input": input_text, "count": params.count, "tone": params.tone, '
    '"ratio": params.ratio, "title": params.title} | tojson }}'
)


@pytest.fixture(scope="module")
async def workflow_id(stack: Any) -> str:
    return await apply_workflow(
        stack,
        [{"id": "echo", "type": "template", "output": "json", "template": TEMPLATE}],
        fields=FIELDS,
        name=NAME,
    )


async def _get(stack: Any, token: str, workflow_id: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{stack.base_url}/api/v1/workflows/{workflow_id}/openapi.json",
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.headers["Content-Type"].startswith("application/json")
        return response.status, await response.json()


def _schema(doc: dict[str, Any], name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", **doc})


async def test_a_valid_openapi_31_document_typed_from_the_fields(
    stack: Any, account: Account, workflow_id: str, http: aiohttp.ClientSession
) -> None:
    status, doc = await _get(stack, account.token, workflow_id)
    assert status == 200, doc
    schemathesis.openapi.from_dict(doc).validate()  # the OpenAPI 3.1 meta-schema
    assert doc["openapi"] == "3.1.0"
    assert doc["servers"] == [{"url": stack.base_url.rstrip("/")}]
    params = doc["components"]["schemas"]["EchoParamsParams"]
    assert params["required"] == ["count"]
    assert doc["components"]["schemas"]["EchoParamsTone"]["enum"] == ["formal", "casual"]

    create = _schema(doc, "EchoParamsCreateRunRequest")
    good = {"input_text": "hi", "params": {"count": 3, "tone": "casual", "title": "t"}}
    assert create.is_valid(good)
    for bad in (
        {"input_text": "hi", "params": {"count": "3"}},
        {"input_text": "hi", "params": {"count": 1}},
        {"input_text": "hi", "params": {"count": 3, "tone": "rude"}},
        {"input_text": "hi", "params": {"count": 3, "doc": "not-an-id"}},
        {"input_text": "hi", "params": {"count": 3, "nope": 1}},
        {"input_text": "hi"},
    ):
        assert not create.is_valid(bad), bad
    endpoint = _schema(doc, "EchoParamsEndpointRequest")
    assert endpoint.is_valid({"count": 2, "input_text": "hi"})
    assert not endpoint.is_valid({"count": 2.5})
    assert (
        "multipart/form-data"
        in (doc["paths"][f"/api/v1/endpoints/{_slug(doc)}"]["post"]["requestBody"]["content"])
    )

    # What the schema accepts the server accepts, and the answer matches the Run schema.
    [path] = [p for p in doc["paths"] if p.endswith("/runs")]
    async with http.post(stack.base_url + path, json=good, headers=account.headers) as r:
        assert r.status == 201, await r.text()
        created = await r.json()
    _schema(doc, "CreatedRunEnvelope").validate(created)
    async with http.post(
        stack.base_url + path,
        json={"input_text": "hi", "params": {"count": "3"}},
        headers=account.headers,
    ) as r:
        assert r.status == 400
        _schema(doc, "Error").validate(await r.json())
    done = await wait_for(http, stack, account, created["data"]["id"])
    assert done["status"] == "completed", done
    _schema(doc, "Run").validate(done)


def _slug(doc: dict[str, Any]) -> str:
    [path] = [p for p in doc["paths"] if p.startswith("/api/v1/endpoints/")]
    return path.rsplit("/", 1)[1]


async def test_404_outside_the_allowlist_or_unknown_and_403_without_the_scope(
    stack: Any, account: Account, workflow_id: str
) -> None:
    other = admin_json(
        stack,
        "keys",
        "create",
        "--user",
        account.user_id,
        "--name",
        "a",
        "--allowlist",
        "wf_someotherworkflow",
    )["secret"]
    status, body = await _get(stack, other, workflow_id)
    assert (status, body["error"]["code"]) == (404, "NOT_FOUND")
    status, body = await _get(stack, account.token, "wf_doesnotexist")
    assert (status, body["error"]["code"]) == (404, "NOT_FOUND")
    runs_only = admin_json(
        stack,
        "keys",
        "create",
        "--user",
        account.user_id,
        "--name",
        "r",
        "--scopes",
        "workflow_runs:create",
    )["secret"]
    status, body = await _get(stack, runs_only, workflow_id)
    assert (status, body["error"]["code"]) == (403, "MISSING_SCOPE")


_CLIENT_SCRIPT = """
import json, os, sys
from echo_client import AuthenticatedClient
from echo_client.api.default import create_run, get_run
from echo_client.models import EchoParamsCreateRunRequest, EchoParamsParams
from echo_client.models import EchoParamsTone

client = AuthenticatedClient(base_url=sys.argv[1], token=os.environ["WEFT_API_KEY"])
body = EchoParamsCreateRunRequest(
    input_text="from a generated client",
    params=EchoParamsParams(count=4, tone=EchoParamsTone.CASUAL, title="typed"),
)
created = create_run.sync_detailed(client=client, body=body, idempotency_key="gen-1")
assert created.status_code == 201, created.content
run = created.parsed.data
while run.status.value not in ("completed", "failed", "canceled"):
    run = get_run.sync(run.id, client=client, wait=30).data
print(json.dumps(run.to_dict()))
"""


async def test_a_generated_client_creates_a_run_that_completes(
    stack: Any, account: Account, workflow_id: str, tmp_path: Path
) -> None:
    generator = Path(sys.executable).with_name("openapi-python-client")
    if not generator.exists():
        pytest.skip("openapi-python-client is not installed (pip install -e '.[dev]')")
    status, doc = await _get(stack, account.token, workflow_id)
    assert status == 200
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    (tmp_path / "config.yml").write_text("package_name_override: echo_client\n")
    env = {
        "PATH": f"{generator.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "WEFT_API_KEY": account.token,
    }
    generate = [
        str(generator),
        "generate",
        "--path",
        "doc.json",
        "--meta",
        "none",
        "--config",
        "config.yml",
        "--output-path",
        "echo_client",
    ]
    done = await asyncio.to_thread(
        subprocess.run,
        generate,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    (tmp_path / "run.py").write_text(_CLIENT_SCRIPT)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "run.py", stack.base_url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "completed", run
    assert run["result"] == {
        "input": "from a generated client",
        "count": 4,
        "tone": "casual",
        "ratio": 0.5,
        "title": "typed",
    }
    shutil.rmtree(tmp_path / "echo_client", ignore_errors=True)
