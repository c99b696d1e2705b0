"""Webhook deliveries through the real stack: a receiver on 127.0.0.1 verifies every
signature, answers 500 twice and then 200; the delivery keeps one id across attempts,
and the attempts show in `weft-admin webhooks deliveries`."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator

from gateway.openapi_spec import document
from services.runs.delivery.webhooks import verify
from tests.support.runs import Account, apply_workflow, create_run, runs_db, wait_for

pytestmark = pytest.mark.timeout(150)


@dataclass
class Receiver:
    """Answers 500 to the first `failures` attempts of each delivery id, then 200."""

    secret: str
    failures: int = 2
    attempts: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        doc = json.loads(body)
        valid = verify(self.secret, body, request.headers.get("Weft-Signature", ""))
        earlier = [a for a in self.attempts if a["id"] == doc["id"]]
        status = 500 if len(earlier) < self.failures else 200
        self.attempts.append(
            {
                "id": doc["id"],
                "type": doc["type"],
                "doc": doc,
                "headers": dict(request.headers),
                "valid": valid,
                "status": status,
            }
        )
        return web.Response(status=status, text="nope" if status == 500 else "ok")

    def answered_ok(self, event_type: str) -> list[dict[str, Any]]:
        return [a for a in self.attempts if a["type"] == event_type and a["status"] == 200]


def matches_the_openapi_webhook(attempt: dict[str, Any]) -> None:
    """The delivery as gateway/openapi.yaml's `webhooks` section describes it."""
    doc = document("http://x")
    operation = doc["webhooks"][attempt["type"]]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": doc["components"]}).validate(attempt["doc"])
    for ref in operation["parameters"]:
        header = doc["components"]["parameters"][ref["$ref"].rsplit("/", 1)[1]]
        validator = Draft202012Validator({**header["schema"], "components": doc["components"]})
        validator.validate(attempt["headers"][header["name"]])
    assert attempt["headers"]["Weft-Delivery"] == attempt["doc"]["id"]


@pytest.fixture
async def receiver(stack: Any, account: Account) -> AsyncIterator[Receiver]:
    shown = await asyncio.to_thread(stack.admin, "webhooks", "secret", "--account", account.user_id)
    secret = json.loads(shown.stdout)["secret"]
    assert secret.startswith("whsec_")
    recv = Receiver(secret)
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recv.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield recv
    finally:
        await runner.cleanup()


async def eventually(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


async def test_delivery_is_signed_retried_and_keeps_its_id(
    stack: Any, account: Account, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    workflow_id = await apply_workflow(
        stack, [{"id": "only", "type": "template", "template": "done {{ input_text }}"}]
    )
    run = await create_run(http, stack, account, workflow_id, "hooked", webhook_url=receiver.url)
    finished = await wait_for(http, stack, account, run["id"])
    assert finished["status"] == "completed"

    await eventually(lambda: bool(receiver.answered_ok("run.completed")))
    completed = [a for a in receiver.attempts if a["type"] == "run.completed"]
    assert [a["status"] for a in completed] == [500, 500, 200]
    assert all(a["valid"] for a in receiver.attempts), "every attempt is signed correctly"
    assert len({a["id"] for a in completed}) == 1 and completed[0]["id"].startswith("evt_")
    doc = completed[-1]["doc"]
    assert doc["data"]["id"] == run["id"] and doc["data"]["status"] == "completed"
    assert doc["data"]["result"] == "done hooked"
    matches_the_openapi_webhook(completed[0])
    # Only terminal events and awaiting_input are delivered.
    assert {a["type"] for a in receiver.attempts} == {"run.completed"}

    shown = await asyncio.to_thread(
        stack.admin, "webhooks", "deliveries", "--run", run["id"], check=False
    )
    assert shown.returncode == 0, shown.stderr
    (delivery,) = json.loads(shown.stdout)
    assert delivery["id"] == completed[0]["id"]
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    assert delivery["event_type"] == "run.completed" and delivery["url"] == receiver.url
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 200]


async def test_awaiting_input_is_delivered_and_a_bad_signature_fails_verification(
    stack: Any, account: Account, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.failures = 0
    workflow_id = await apply_workflow(
        stack,
        [
            {
                "id": "review",
                "type": "human_review",
                "prompt": "ok?",
                "fields": [{"name": "ok", "type": "boolean", "required": True}],
            }
        ],
    )
    run = await create_run(http, stack, account, workflow_id, "wait", webhook_url=receiver.url)
    await eventually(lambda: bool(receiver.answered_ok("run.awaiting_input")))
    (attempt,) = receiver.answered_ok("run.awaiting_input")
    assert attempt["doc"]["data"]["id"] == run["id"]
    assert attempt["valid"] and attempt["doc"]["data"]["status"] == "awaiting_input"
    assert attempt["doc"]["data"]["human_input_request"]["stage"] == "review"
    matches_the_openapi_webhook(attempt)
    body = json.dumps(attempt["doc"]).encode()
    assert not verify("whsec_wrong", body, f"t={int(time.time())},v1=00")


async def test_private_destination_is_refused_by_the_ssrf_guard(
    stack: Any, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow_id = await apply_workflow(stack, [{"id": "only", "type": "template", "template": "x"}])
    # 10.0.0.0/8 is not allowed for this stack (only loopback is, for the receivers): the
    # rule every delivery applies refuses it when the run is created already.
    # (test_hostile_runs.py: a delivery the guard refuses later fails at once.)
    async with http.post(
        f"{stack.base_url}/api/v1/workflows/{workflow_id}/runs",
        json={"input_text": "ssrf", "webhook_url": "https://10.11.12.13/hook"},
        headers=account.headers,
    ) as response:
        body = await response.json()
        assert response.status == 400, body
    assert body["error"]["code"] == "INVALID_PARAM" and body["error"]["param"] == "webhook_url"
    assert "private address" in body["error"]["message"]


async def test_the_dispatcher_is_woken_only_when_a_delivery_is_queued(
    stack: Any, account: Account, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    workflow_id = await apply_workflow(
        stack, [{"id": "only", "type": "template", "template": "done {{ input_text }}"}]
    )
    wakes: list[str] = []
    conn = await runs_db(stack)
    try:
        await conn.add_listener("weft_webhooks", lambda *_: wakes.append("wake"))
        plain = await create_run(http, stack, account, workflow_id, "no hook")
        assert (await wait_for(http, stack, account, plain["id"]))["status"] == "completed"
        await asyncio.sleep(0.5)  # a notification would have arrived by now
        assert wakes == [], "a run without a webhook woke the dispatcher"
        hooked = await create_run(
            http, stack, account, workflow_id, "hook", webhook_url=receiver.url
        )
        await wait_for(http, stack, account, hooked["id"])
        await eventually(lambda: bool(wakes), timeout=10)
    finally:
        await conn.close()


async def test_runs_finished_together_queue_one_delivery_each_only_with_a_webhook(
    stack: Any, account: Account, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    # Created together, these runs finish in shared worker statements: deliveries are
    # queued per statement, from every event it inserted.
    workflow_id = await apply_workflow(
        stack, [{"id": "only", "type": "template", "template": "done {{ input_text }}"}]
    )
    created = await asyncio.gather(
        *(
            create_run(
                http,
                stack,
                account,
                workflow_id,
                f"r{i}",
                **({"webhook_url": receiver.url} if i % 2 else {}),
            )
            for i in range(12)
        )
    )
    for run in created:
        assert (await wait_for(http, stack, account, run["id"]))["status"] == "completed"
    conn = await runs_db(stack)
    try:
        queued = await conn.fetch(
            "SELECT d.run_id, d.event_type, d.url, e.event_id FROM webhook_deliveries d"
            " JOIN run_events e ON e.event_id = d.id WHERE d.run_id = ANY($1::text[])",
            [run["id"] for run in created],
        )
    finally:
        await conn.close()
    hooked = {run["id"] for i, run in enumerate(created) if i % 2}
    assert sorted(row["run_id"] for row in queued) == sorted(hooked)
    assert {(row["event_type"], row["url"]) for row in queued} == {("run.completed", receiver.url)}
