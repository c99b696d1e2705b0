"""Workflows through the real stack: apply (weft-admin and gRPC), versions, list and
get through the gateway with pagination, allowlists and the error envelope."""

import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from tests.support.runs import admin_json
from weft.runs.v1 import runs_pb2 as pb
from weft.runs.v1 import runs_pb2_grpc
from weftcore.errors import from_rpc_error


def definition(slug: str, template: str = "Hello {{ input_text }}") -> str:
    return json.dumps(
        {
            "slug": slug,
            "name": f"Test {slug}",
            "description": "template only",
            "fields": [
                {"name": "count", "type": "integer", "required": True, "constraints": {"min": 1}},
                {"name": "tone", "type": "select", "constraints": {"options": ["a", "b"]}},
            ],
            "stages": [{"id": "greet", "type": "template", "template": template}],
        }
    )


@pytest.fixture(scope="module")
def user(stack: Any) -> dict[str, Any]:
    email = f"wf-{uuid.uuid4().hex[:10]}@example.com"
    return admin_json(stack, "users", "create", "--email", email, "--plan", "pro")  # type: ignore[no-any-return]


def key(stack: Any, user_id: str, *extra: str) -> str:
    made = admin_json(stack, "keys", "create", "--user", user_id, "--name", "wf", *extra)
    return str(made["secret"])


async def get(stack: Any, path: str, token: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{stack.base_url}{path}", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            return response.status, await response.json()


async def test_admin_applies_the_examples_and_versions_changes(stack: Any, tmp_path: Path) -> None:
    examples = sorted(str(p) for p in (Path(__file__).parents[2] / "workflows").glob("*.yaml"))
    applied = admin_json(stack, "workflows", "apply", *examples)
    assert {a["slug"] for a in applied} == {"classify-ticket", "review-reply", "timesheet-summary"}
    assert all("error" not in a for a in applied)
    listed = {w["slug"]: w for w in admin_json(stack, "workflows", "list")}
    assert {"classify-ticket", "review-reply", "timesheet-summary"} <= set(listed)

    slug = f"ver-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "wf.json"
    path.write_text(definition(slug))
    first = admin_json(stack, "workflows", "apply", str(path))[0]
    again = admin_json(stack, "workflows", "apply", str(path))[0]
    path.write_text(definition(slug, template="Bye {{ input_text }}"))
    changed = admin_json(stack, "workflows", "apply", str(path))[0]
    assert (first["version"], first["changed"]) == (1, True)
    assert (again["version"], again["changed"]) == (1, False)
    assert (changed["id"], changed["version"], changed["changed"]) == (first["id"], 2, True)
    shown = admin_json(stack, "workflows", "show", slug)
    assert shown["version"] == 2 and "Bye" in shown["definition"]["stages"][0]["template"]


async def test_apply_reports_the_path_of_a_bad_field(stack: Any, tmp_path: Path) -> None:
    bad = json.loads(definition(f"bad-{uuid.uuid4().hex[:8]}"))
    bad["stages"][0] = {"id": "x", "type": "llm", "model": "nomodel", "prompt": "p"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = stack.admin("workflows", "apply", str(path), check=False)
    assert result.returncode == 1
    out = json.loads(result.stdout)[0]
    assert out["param"] == "stages[0].model" and out["code"] == "INVALID_PARAM"


async def test_grpc_apply_conflicting_slug_is_409(
    runs: runs_pb2_grpc.RunsServiceStub,
) -> None:
    slug = f"dup-{uuid.uuid4().hex[:8]}"
    await runs.ApplyWorkflow(pb.ApplyWorkflowRequest(definition=definition(slug)))
    other = json.loads(definition(slug))
    other["id"] = "wf_someone_else_" + uuid.uuid4().hex[:6]
    with pytest.raises(grpc.RpcError) as info:
        await runs.ApplyWorkflow(pb.ApplyWorkflowRequest(definition=json.dumps(other)))
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert from_rpc_error(info.value).param == "slug"


async def test_list_and_get_through_the_gateway(
    stack: Any, runs: runs_pb2_grpc.RunsServiceStub, user: dict[str, Any]
) -> None:
    token = key(stack, user["id"])
    ids = []
    for _ in range(3):
        wf = await runs.ApplyWorkflow(
            pb.ApplyWorkflowRequest(definition=definition(f"list-{uuid.uuid4().hex[:8]}"))
        )
        ids.append(wf.id)
    # Walk every page of 2 and find all three, in id order, each exactly once.
    seen: list[str] = []
    cursor = ""
    while True:
        status, body = await get(
            stack, f"/api/v1/workflows?limit=2{cursor and '&starting_after=' + cursor}", token
        )
        assert status == 200, body
        assert set(body) == {"data", "has_more"} and len(body["data"]) <= 2
        for item in body["data"]:
            assert {"id", "name", "description", "updated_at"} <= set(item)
        seen += [w["id"] for w in body["data"]]
        if not body["has_more"]:
            break
        cursor = body["data"][-1]["id"]
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert set(ids) <= set(seen)

    status, body = await get(stack, f"/api/v1/workflows/{ids[0]}", token)
    assert status == 200, body
    data = body["data"]
    assert data["id"] == ids[0]
    assert data["stages"] == [{"id": "greet", "type": "template"}]
    assert data["fields"][0] == {
        "name": "count",
        "type": "integer",
        "required": True,
        "description": "",
        "default": None,
        "constraints": {"min": 1},
    }
    assert data["fields"][1]["constraints"] == {"options": ["a", "b"]}
    assert data["endpoint_url"] == f"{stack.base_url}/api/v1/endpoints/{data['slug']}"
    assert data["links"]["self"] == f"{stack.base_url}/api/v1/workflows/{ids[0]}"

    status, body = await get(stack, "/api/v1/workflows/wf_does_not_exist", token)
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    for bad in ("limit=0", "limit=101", "limit=x"):
        status, body = await get(stack, f"/api/v1/workflows?{bad}", token)
        assert status == 400 and body["error"]["param"] == "limit"


async def test_allowlist_hides_other_workflows(
    stack: Any, runs: runs_pb2_grpc.RunsServiceStub, user: dict[str, Any]
) -> None:
    allowed = await runs.ApplyWorkflow(
        pb.ApplyWorkflowRequest(definition=definition(f"allow-{uuid.uuid4().hex[:8]}"))
    )
    hidden = await runs.ApplyWorkflow(
        pb.ApplyWorkflowRequest(definition=definition(f"hide-{uuid.uuid4().hex[:8]}"))
    )
    token = key(stack, user["id"], "--allowlist", allowed.id)
    status, body = await get(stack, "/api/v1/workflows?limit=100", token)
    assert status == 200 and [w["id"] for w in body["data"]] == [allowed.id]
    assert body["has_more"] is False
    status, _ = await get(stack, f"/api/v1/workflows/{allowed.id}", token)
    assert status == 200
    status, body = await get(stack, f"/api/v1/workflows/{hidden.id}", token)
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    # Without workflows:read the same key holder gets 403.
    runs_only = key(stack, user["id"], "--scopes", "workflow_runs:create")
    status, body = await get(stack, "/api/v1/workflows", runs_only)
    assert status == 403 and body["error"]["code"] == "MISSING_SCOPE"


async def test_runs_pin_the_version_they_were_created_with(
    stack: Any, runs: runs_pb2_grpc.RunsServiceStub, user: dict[str, Any]
) -> None:
    token = key(stack, user["id"])
    slug = f"pin-{uuid.uuid4().hex[:8]}"
    wf = await runs.ApplyWorkflow(pb.ApplyWorkflowRequest(definition=definition(slug)))
    caller = pb.Caller(user_id=user["id"], plan="pro")

    async def create() -> str:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{stack.base_url}/api/v1/workflows/{slug}/runs",
                json={"input_text": "v", "params": {"count": 1}},
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                body = await response.json()
                assert response.status == 201, body
                return str(body["data"]["id"])

    first = await create()
    await runs.ApplyWorkflow(
        pb.ApplyWorkflowRequest(definition=definition(slug, template="v2 {{ input_text }}"))
    )
    second = await create()
    got = [
        await runs.GetRun(pb.GetRunRequest(caller=caller, run_id=run_id))
        for run_id in (first, second)
    ]
    assert [r.workflow_id for r in got] == [wf.id, wf.id]
    assert [r.workflow_version for r in got] == [1, 2]
