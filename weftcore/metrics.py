"""Prometheus metrics every process shares: serving /metrics, and per-RPC metrics.

Each process serves its registry on its own port, `WEFT_METRICS_BIND` (`host:port`;
empty or `0` turns it off). The per-RPC metrics are recorded by the gRPC server's one
interceptor (weftcore.grpc_server.ContextInterceptor), so every service has them.
"""

import asyncio
import logging
import threading
import time
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from weftcore.config import MetricsBind

log = logging.getLogger(__name__)

# Seconds: from sub-millisecond lookups to a long streamed upload.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

RPC_HANDLED = Counter(
    "weft_grpc_server_handled_total",
    "gRPC calls answered, by service, method and status code",
    ["grpc_service", "grpc_method", "grpc_code"],
)
RPC_DURATION = Histogram(
    "weft_grpc_server_handling_seconds",
    "Time to answer a gRPC call, by service and method",
    ["grpc_service", "grpc_method"],
    buckets=RPC_BUCKETS,
)


class MetricsServer:
    """prometheus-client's HTTP server in its own thread (scrapes never wait for the
    event loop); `close()` stops it."""

    def __init__(self, bind: MetricsBind | None) -> None:
        self.bind = bind
        self.port = 0
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.bind is None:
            return
        self._server, self._thread = start_http_server(self.bind.port, self.bind.host)
        self.port = int(self._server.server_port)
        log.info("metrics server listening", extra={"bind": f"{self.bind.host}:{self.port}"})

    async def close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.shutdown)  # waits for its loop's next poll
            server.server_close()


def split_method(full: str) -> tuple[str, str]:
    """`/weft.runs.v1.RunsService/CreateRun` -> (`weft.runs.v1.RunsService`, `CreateRun`)."""
    service, _, method = full.lstrip("/").rpartition("/")
    return service or "unknown", method or full


class RpcTimer:
    """Times one call; `done(code)` records it once."""

    __slots__ = ("method", "service", "started")

    def __init__(self, full_method: str) -> None:
        self.service, self.method = split_method(full_method)
        self.started = time.perf_counter()

    def done(self, code: grpc.StatusCode | None) -> None:
        name = (code or grpc.StatusCode.OK).name
        RPC_HANDLED.labels(self.service, self.method, name).inc()
        RPC_DURATION.labels(self.service, self.method).observe(time.perf_counter() - self.started)


def code_of(context: object, exc: BaseException | None) -> grpc.StatusCode | None:
    """The status a call ended with: what the context was aborted with, else CANCELLED or
    UNKNOWN for an escaping exception, else OK (None)."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED  # the caller went away, or the server stops
    try:
        code = context.code()  # type: ignore[attr-defined]
    except Exception:
        code = None
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        for member in grpc.StatusCode:
            if member.value[0] == code:
                return member
    if exc is not None:
        return grpc.StatusCode.UNKNOWN
    return None


JS_PENDING = Gauge(
    "weft_jetstream_consumer_pending",
    "Messages in the stream not yet delivered to the consumer (its lag)",
    ["stream", "consumer"],
)
JS_ACK_PENDING = Gauge(
    "weft_jetstream_consumer_ack_pending",
    "Messages delivered to the consumer and not yet acked",
    ["stream", "consumer"],
)
JS_REDELIVERED = Gauge(
    "weft_jetstream_consumer_redelivered",
    "Messages delivered more than once and not yet acked",
    ["stream", "consumer"],
)
JS_WAITING = Gauge(
    "weft_jetstream_consumer_waiting_pulls",
    "Pull requests waiting on the consumer (idle workers asking for jobs)",
    ["stream", "consumer"],
)
JS_UP = Gauge(
    "weft_jetstream_consumer_info_up",
    "1 when the last consumer_info poll answered, else 0",
    ["stream", "consumer"],
)


class ConsumerInfoSource(Protocol):
    async def consumer_info(self, stream: str, consumer: str) -> Any: ...


async def poll_consumer(js: ConsumerInfoSource, stream: str, consumer: str) -> bool:
    """Sets the consumer's gauges from one consumer_info; False when it did not answer
    (the gauges keep their last values, `..._info_up` drops to 0)."""
    up = JS_UP.labels(stream, consumer)
    try:
        info = await asyncio.wait_for(js.consumer_info(stream, consumer), 5.0)
    except asyncio.CancelledError:
        raise
    except Exception:
        up.set(0)
        return False
    JS_PENDING.labels(stream, consumer).set(info.num_pending or 0)
    JS_ACK_PENDING.labels(stream, consumer).set(info.num_ack_pending or 0)
    JS_REDELIVERED.labels(stream, consumer).set(info.num_redelivered or 0)
    JS_WAITING.labels(stream, consumer).set(info.num_waiting or 0)
    up.set(1)
    return True


async def watch_consumers(
    js: ConsumerInfoSource, consumers: list[tuple[str, str]], interval: float = 15.0
) -> None:
    """Poll each (stream, durable) until cancelled (a weftcore.background task)."""
    while True:
        for stream, consumer in consumers:
            await poll_consumer(js, stream, consumer)
        await asyncio.sleep(interval)
