"""OpenTelemetry traces through a whole stack of real processes (issue 20): one run's
spans, from the gateway, the runs service, the worker, billing and the webhook delivery,
share one trace id. The processes export OTLP over HTTP to a collector this test runs,
which keeps the spans in memory."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from devstack.ports import free_port
from devstack.stack import Ports, Stack, StackOptions
from tests.support.runs import create_account, wait_for

pytestmark = pytest.mark.timeout(240)


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str
    name: str


class Collector:
    """An OTLP/HTTP traces endpoint (and a webhook receiver) keeping what it gets."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.hooks: list[dict[str, Any]] = []
        self.port = free_port()

    async def traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        Span(attributes.get("service.name", ""), span.trace_id.hex(), span.name)
                    )
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def hook(self, request: web.Request) -> web.Response:
        self.hooks.append(await request.json())
        return web.Response(text="ok")


@pytest.fixture(scope="module")
async def collector() -> AsyncIterator[Collector]:
    collector = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", collector.traces)
    app.router.add_post("/hook", collector.hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", collector.port).start()
    yield collector
    await runner.cleanup()


@pytest.fixture(scope="module")
def traced_stack(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("traced")
    stack = Stack(
        StackOptions(
            root=root,
            ports=Ports.free(),
            llm="none",
            fake_llm=True,
            extra_env={
                "WEFT_PRICES": '{"fake:echo": [1000000, 2000000]}',
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": (
                    f"http://127.0.0.1:{collector.port}/v1/traces"
                ),
                "WEFT_WORKFLOWS_DIR": "",
            },
        )
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


WORKFLOW = {
    "name": "Traced",
    "stages": [
        {"id": "ask", "type": "llm", "model": "fake:echo", "prompt": "{{ input_text }}"},
        {"id": "shape", "type": "template", "template": "{{ stages.ask }}"},
    ],
}


async def test_one_runs_spans_from_every_process_share_one_trace(
    traced_stack: Stack, collector: Collector
) -> None:
    stack = traced_stack
    account = create_account(stack)
    base = f"{stack.base_url}/api/v1"
    async with aiohttp.ClientSession(headers=account.headers) as http:
        definition = {**WORKFLOW, "slug": f"traced-{uuid.uuid4().hex[:8]}"}
        async with http.post(f"{base}/workflows", json=definition) as response:
            workflow_id = (await response.json())["data"]["id"]
        async with http.post(f"{base}/workflows/{workflow_id}/publish") as response:
            assert response.status == 201
        # The client starts the trace: the gateway continues a given traceparent.
        trace_id = uuid.uuid4().hex
        headers = {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
        body = {
            "input_text": "hello",
            "webhook_url": f"http://127.0.0.1:{collector.port}/hook",
        }
        async with http.post(
            f"{base}/workflows/{workflow_id}/runs", json=body, headers=headers
        ) as response:
            created = await response.json()
            assert response.status == 201, created
        run = await wait_for(http, stack, account, created["data"]["id"])
        assert run["status"] == "completed", run

    wanted = {
        ("weft-gateway", None),
        ("weft-runs", None),
        ("weft-worker", "run job"),
        ("weft-worker", "stage ask"),
        ("weft-worker", "llm chat"),
        ("weft-billing", "billing event"),
        ("weft-runs", "webhook delivery"),
    }
    deadline = time.monotonic() + 30
    while True:
        mine = [s for s in collector.spans if s.trace_id == trace_id]
        seen = {(s.service, s.name) for s in mine} | {(s.service, None) for s in mine}
        if wanted <= seen or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert wanted <= seen, sorted(wanted - seen)
    assert collector.hooks, "the webhook was delivered"
    # Every process's spans of the run are in that one trace.
    assert {s.service for s in mine} >= {"weft-gateway", "weft-runs", "weft-worker", "weft-billing"}
