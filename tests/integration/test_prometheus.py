"""A real Prometheus (the Debian package scripts/setup installs) scrapes every process of
the stack; a run's metrics and the RPCs that served it show up in its query API."""

import asyncio
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from devstack.ports import free_port
from devstack.stack import Stack
from tests.integration.attachments_support import upload
from tests.support.runs import Account, apply_workflow, create_run, wait_for

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (scripts/setup installs it as root)"
)


def scrape_config(stack: Stack) -> dict[str, Any]:
    """One job per process of the stack, each at its own /metrics."""
    jobs = []
    for name, url in sorted(stack.metrics_urls.items()):
        address = url.removeprefix("http://").removesuffix("/metrics")
        jobs.append(
            {
                "job_name": name,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [address]}],
            }
        )
    return {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": jobs}


@pytest.fixture(scope="module")
def prometheus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("prometheus")
    (root / "prometheus.yml").write_text(yaml.safe_dump(scrape_config(stack)))
    port = free_port()
    log = (root / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(process, port, root / "prometheus.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"prometheus exited: {log.read_text()[-2000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"prometheus not ready: {log.read_text()[-2000:]}"
        time.sleep(0.2)


@pytest.fixture
async def api(prometheus: str) -> AsyncIterator["PromApi"]:
    async with aiohttp.ClientSession() as http:
        yield PromApi(http, prometheus)


class PromApi:
    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def get(self, path: str, **params: str) -> Any:
        async with self.http.get(f"{self.base}/api/v1/{path}", params=params) as response:
            body = await response.json()
            assert response.status == 200 and body["status"] == "success", body
            return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        return list((await self.get("query", query=expr))["result"])

    async def value(self, expr: str) -> float:
        """The one sample `expr` answers (0 when it answers none)."""
        result = await self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else 0.0

    async def until(self, expr: str, check: Any, seconds: float = 60.0) -> float:
        """Polls `expr` until `check(value)` holds; AssertionError after `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            value = await self.value(expr)
            if check(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr} stayed {value}")
            await asyncio.sleep(0.5)


async def test_every_process_is_scraped(stack: Stack, api: PromApi) -> None:
    want = set(stack.metrics_urls)
    assert {"auth", "runs", "storage", "billing", "worker", "gateway"} <= want
    deadline = time.monotonic() + 60
    while True:
        targets = (await api.get("targets"))["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        if health == {name: "up" for name in want}:
            break
        assert time.monotonic() < deadline, health
        await asyncio.sleep(0.5)


async def test_a_run_shows_in_the_runs_rpc_llm_and_queue_metrics(
    stack: Stack, api: PromApi, account: Account, http: aiohttp.ClientSession
) -> None:
    workflow = await apply_workflow(
        stack,
        [
            {"id": "greet", "type": "template", "template": "hi {{ input_text }}"},
            {"id": "ask", "type": "llm", "model": "fake:echo", "prompt": "{{ stages.greet }}"},
        ],
    )
    created = 'sum(weft_runs_created_total{job="runs"})'
    completed = 'sum(weft_runs_finished_total{job="runs",status="completed"})'
    # The counters exist from the process start (no run needed), so a baseline is known.
    before = await api.until(created, lambda v: v >= 0)
    await api.until(f"count({created})", lambda v: v == 1)
    done_before = await api.value(completed)
    run = await create_run(http, stack, account, workflow, "prometheus")
    finished = await wait_for(http, stack, account, run["id"])
    assert finished["status"] == "completed", finished

    await api.until(created, lambda v: v >= before + 1)
    await api.until(completed, lambda v: v >= done_before + 1)
    # Run and stage durations by stage type, observed when the run finished.
    await api.until('sum(weft_run_duration_seconds_count{status="completed"})', lambda v: v >= 1)
    for stage_type in ("template", "llm"):
        await api.until(
            f'sum(weft_stage_duration_seconds_count{{stage_type="{stage_type}"}})',
            lambda v: v >= 1,
        )
    # RPCs, timed and counted by the shared interceptor: the workflow applied above, the
    # reads of the run behind the gateway's GET, the gateway's authentications.
    await api.until(
        'sum(weft_grpc_server_handling_seconds_count{job="runs",grpc_method="ApplyWorkflow"})',
        lambda v: v >= 1,
    )
    await api.until(
        'sum(weft_grpc_server_handled_total{job="runs",grpc_method="GetRun",grpc_code="OK"})',
        lambda v: v >= 1,
    )
    await api.until(
        'sum(weft_grpc_server_handled_total{job="auth",grpc_code="OK"})', lambda v: v >= 1
    )
    p95 = await api.value(
        "histogram_quantile(0.95, sum by (le) "
        '(weft_grpc_server_handling_seconds_bucket{job="runs",grpc_method="GetRun"}))'
    )
    assert p95 > 0
    # The LLM stage, by model, with the tokens the fake provider reported.
    await api.until('sum(weft_llm_calls_total{model="fake:echo",outcome="ok"})', lambda v: v >= 1)
    await api.until('sum(weft_llm_tokens_total{model="fake:echo"})', lambda v: v > 0)
    # The job queue's consumer, polled by the worker; billing's by billing.
    consumers = await api.until("count(weft_jetstream_consumer_info_up == 1)", lambda v: v >= 2)
    assert consumers >= 2
    # The periodic surveys: runs in flight by status, and a sound ledger.
    await api.until('count(weft_runs_in_flight{job="runs"})', lambda v: v == 2)
    await api.until('count(weft_billing_ledger_check_up{job="billing"} == 1)', lambda v: v == 1)
    assert await api.value('weft_billing_ledger_mismatched_accounts{job="billing"}') == 0
    # Gateway routes are templates, never paths with ids in them.
    routes = {r["metric"]["route"] for r in await api.query("weft_http_requests_total")}
    assert "/api/v1/workflow-runs/{run_id}" in routes
    assert not any(run["id"] in route for route in routes)


async def test_uploads_and_webhook_attempts_show_by_kind_and_outcome(
    stack: Stack, api: PromApi, account: Account, http: aiohttp.ClientSession
) -> None:
    answers = [500]  # the first attempt fails, the retry delivers

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=answers.pop() if answers else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    extracted = 'sum(weft_storage_extraction_duration_seconds_count{kind="csv"})'
    failed = 'sum(weft_webhook_attempts_total{outcome="http_error"})'
    delivered = 'sum(weft_webhook_attempts_total{outcome="delivered"})'
    try:
        before = [await api.value(e) for e in (extracted, failed, delivered)]
        status, body = await upload(http, stack, account, "t.csv", b"a,b\n1,2\n")
        assert status == 201, body
        workflow = await apply_workflow(
            stack, [{"id": "only", "type": "template", "template": "{{ input_text }}"}]
        )
        run = await create_run(http, stack, account, workflow, "hooked", webhook_url=url)
        await wait_for(http, stack, account, run["id"])
        await api.until(extracted, lambda v: v >= before[0] + 1)
        await api.until(failed, lambda v: v >= before[1] + 1)
        await api.until(delivered, lambda v: v >= before[2] + 1)
    finally:
        await runner.cleanup()
