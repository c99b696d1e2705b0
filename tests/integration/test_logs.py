"""What operators read: every log line is JSON with an ISO-8601 UTC time; the gateway
writes one access line per request (never the token); the worker's lines carry the id
of the request that created the run."""

import json
import uuid
from typing import Any

import aiohttp

from tests.support.runs import apply_workflow, create_account, wait_for


async def test_one_access_line_per_request_and_the_worker_logs_the_creating_request_id(
    stack: Any, http: aiohttp.ClientSession
) -> None:
    account = create_account(stack, "1")
    workflow_id = await apply_workflow(
        stack, [{"id": "broken", "type": "template", "template": "{{ nothing.here() }}"}]
    )
    rid = f"req-logs-{uuid.uuid4().hex[:12]}"
    async with http.post(
        f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs",
        json={"input_text": "hi"},
        headers={**account.headers, "X-Request-Id": rid},
    ) as response:
        assert response.status == 201
        run_id = (await response.json())["data"]["id"]
    run = await wait_for(http, stack, account, run_id)
    assert run["status"] == "failed"

    logs = stack.options.root / "logs"
    access = [
        line
        for line in map(json.loads, (logs / "gateway.log").read_text().splitlines())
        if line.get("logger") == "gateway.access" and line.get("request_id") == rid
    ]
    assert len(access) == 1, access
    (line,) = access
    assert line["method"] == "POST" and line["status"] == 201
    assert line["route"] == "/api/v1/workflows/{workflow_id}/runs"
    assert line["key_id"].startswith("key_") and line["duration_ms"] >= 0
    secret = account.token.removeprefix("wft_live_")
    assert secret not in (logs / "gateway.log").read_text()

    worker = [json.loads(raw) for raw in (logs / "worker.log").read_text().splitlines()]
    failed = [w for w in worker if w.get("message") == "run failed" and w.get("run_id") == run_id]
    assert failed and all(w["request_id"] == rid for w in failed), failed


def test_every_log_line_is_json_with_a_utc_iso_time(stack: Any) -> None:
    for path in sorted((stack.options.root / "logs").glob("*.log")):
        if path.stem in ("postgres", "nats", "s3", "llm", "fake_llm"):
            continue  # the backing servers' own formats
        for raw in path.read_text().splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw)  # raises on anything that is not JSON
            assert line["time"].endswith("Z") and "T" in line["time"], (path.name, raw)
