"""The served OpenAPI document, and live answers validated against its schemas."""

import json
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator

from gateway.openapi_spec import document
from tests.support.runs import apply_workflow, create_account, create_run, wait_for


def _validator(doc: dict[str, Any], ref: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": ref, "components": doc["components"]})


async def test_served_without_a_key_and_equal_to_the_source(stack: Any) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{stack.base_url}/api/v1/openapi.json") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.headers["X-Request-Id"]
        served = await response.json()
    assert served["openapi"].startswith("3.1")
    assert served == document(served["servers"][0]["url"])
    assert served["servers"][0]["url"].startswith("http://127.0.0.1:")


async def test_live_answers_match_the_schemas(stack: Any) -> None:
    doc = document(stack.base_url)
    account = create_account(stack)
    wf = await apply_workflow(stack, [{"id": "t", "type": "template", "template": "x"}])
    async with aiohttp.ClientSession() as http:
        created = await create_run(http, stack, account, wf)
        done = await wait_for(http, stack, account, created["id"])

        async def get(path: str) -> Any:
            async with http.get(f"{stack.base_url}{path}", headers=account.headers) as r:
                assert r.status == 200, await r.text()
                return await r.json()

        run_schema = _validator(
            doc, "#/components/responses/RunOk/content/application~1json/schema"
        )
        me = await get("/api/v1/me")
        _validator(doc, "#/components/schemas/MeEnvelope").validate(me)
        workflow = await get(f"/api/v1/workflows/{wf}")
        _validator(doc, "#/components/schemas/Workflow").validate(workflow["data"])
        run = await get(f"/api/v1/workflow-runs/{done['id']}")
        run_schema.validate(run)
        assert run["data"]["status"] == "completed"
        listed = await get("/api/v1/workflow-runs")
        for item in listed["data"]:
            _validator(doc, "#/components/schemas/Run").validate(item)
        events = f"{stack.base_url}/api/v1/workflow-runs/{done['id']}/events"
        async with http.get(events, headers=account.headers) as r:
            assert r.status == 200
            frames = [f for f in (await r.text()).split("\n\n") if f.startswith("id: ")]
        types = []
        for frame in frames:
            lines = dict(line.split(": ", 1) for line in frame.splitlines())
            item = _validator(doc, "#/components/schemas/RunEventStreamItem")
            item.validate(lines)  # the raw frame (RunEventFrame)
            event = json.loads(lines["data"])
            _validator(doc, "#/components/schemas/RunEvent").validate(event)
            item.validate(event)  # what SSE clients yield
            types.append(event["type"])
        assert types[0] == "run.created" and types[-1] == "run.completed", types
        async with http.get(f"{stack.base_url}/api/v1/nope", headers=account.headers) as r:
            body = await r.json()
            _validator(doc, "#/components/schemas/Error").validate(body)
            assert body["error"]["request_id"] == r.headers["X-Request-Id"]
