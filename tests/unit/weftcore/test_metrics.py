"""weftcore.metrics: the bind setting, the /metrics server, the interceptor's per-RPC
metrics on a real gRPC server, and the JetStream consumer gauges."""

import asyncio
from types import SimpleNamespace
from typing import Any

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from weftcore.config import ConfigError, MetricsBind, parse_bind
from weftcore.grpc_server import GrpcServer
from weftcore.metrics import MetricsServer, poll_consumer, split_method

CHECK = "/grpc.health.v1.Health/Check"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("", None),
        ("0", None),
        ("0.0.0.0:9090", MetricsBind("0.0.0.0", 9090)),
        (":9100", MetricsBind("0.0.0.0", 9100)),
        ("[::1]:9100", MetricsBind("::1", 9100)),
        ("127.0.0.1:0", MetricsBind("127.0.0.1", 0)),
    ],
)
def test_parse_bind(raw: str, want: MetricsBind | None) -> None:
    assert parse_bind(raw) == want


@pytest.mark.parametrize("raw", ["9090", "host:", "host:http", "host:70000"])
def test_parse_bind_refuses_malformed_values(raw: str) -> None:
    with pytest.raises(ConfigError, match="WEFT_METRICS_BIND"):
        parse_bind(raw)


def test_split_method() -> None:
    assert split_method("/weft.runs.v1.RunsService/CreateRun") == (
        "weft.runs.v1.RunsService",
        "CreateRun",
    )
    assert split_method("odd") == ("unknown", "odd")


async def test_the_server_serves_the_registry_and_stops() -> None:
    server = MetricsServer(MetricsBind("127.0.0.1", 0))
    server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            text = await response.text()
    finally:
        await server.close()
    assert "weft_grpc_server_handled_total" in text
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(url):
            pass


async def test_no_bind_serves_nothing() -> None:
    server = MetricsServer(None)
    server.start()
    assert server.port == 0
    await server.close()


async def test_the_interceptor_counts_each_call_by_status_code() -> None:
    server = GrpcServer(["weft.test.v1.Known"], "127.0.0.1:0", 0.1)
    port = await server.start()
    ok = {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Check", "grpc_code": "OK"}
    missing = {**ok, "grpc_code": "NOT_FOUND"}
    before_ok = sample("weft_grpc_server_handled_total", **ok)
    before_missing = sample("weft_grpc_server_handled_total", **missing)
    before_timed = sample(
        "weft_grpc_server_handling_seconds_count",
        grpc_service="grpc.health.v1.Health",
        grpc_method="Check",
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(service="weft.test.v1.Known"))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Check(health_pb2.HealthCheckRequest(service="nope"))
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        # The server counts a call as its handler returns, which may be a moment after the
        # client has the answer (a loaded machine): let it, before stopping the server.
        for _ in range(100):
            if sample("weft_grpc_server_handled_total", **missing) > before_missing:
                break
            await asyncio.sleep(0.02)
    finally:
        await server.server.stop(0)
    assert sample("weft_grpc_server_handled_total", **ok) == before_ok + 1
    assert sample("weft_grpc_server_handled_total", **missing) == before_missing + 1
    assert (
        sample(
            "weft_grpc_server_handling_seconds_count",
            grpc_service="grpc.health.v1.Health",
            grpc_method="Check",
        )
        == before_timed + 2
    )


class FakeJetStream:
    def __init__(self, info: Any) -> None:
        self.info = info

    async def consumer_info(self, stream: str, consumer: str) -> Any:
        if isinstance(self.info, Exception):
            raise self.info
        return self.info


async def test_consumer_gauges_follow_consumer_info() -> None:
    labels = {"stream": "S", "consumer": "c"}
    info = SimpleNamespace(num_pending=7, num_ack_pending=3, num_redelivered=1, num_waiting=2)
    assert await poll_consumer(FakeJetStream(info), "S", "c")
    assert sample("weft_jetstream_consumer_pending", **labels) == 7
    assert sample("weft_jetstream_consumer_ack_pending", **labels) == 3
    assert sample("weft_jetstream_consumer_waiting_pulls", **labels) == 2
    assert sample("weft_jetstream_consumer_info_up", **labels) == 1
    assert not await poll_consumer(FakeJetStream(TimeoutError()), "S", "c")
    assert sample("weft_jetstream_consumer_info_up", **labels) == 0
    assert sample("weft_jetstream_consumer_pending", **labels) == 7  # last known
