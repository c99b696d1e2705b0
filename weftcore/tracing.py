"""OpenTelemetry traces: one run followed from the HTTP request through every gRPC call,
the NATS messages and the worker's stages to billing and webhook delivery.

Off by default. The standard variables turn it on: `OTEL_TRACES_EXPORTER=otlp` (OTLP
over HTTP/protobuf to `OTEL_EXPORTER_OTLP_ENDPOINT` / `..._TRACES_ENDPOINT`) or
`console`; `OTEL_SERVICE_NAME` overrides the process's name. Every trace that starts at
a request or a message is kept; database queries and gRPC calls of background loops
(no request behind them: the outbox relay's polls, expiry sweeps) are not traced, so they
do not bury the runs' traces. When off, nothing is instrumented and `traceparent()` is "".

Across NATS the context travels in the W3C `traceparent` header: a run's outbox rows
keep the context they were written in (services/runs/domain/transitions.py), the relay
sends it as the message header, and each consumer continues it (`consumer_span`).
"""

import atexit
import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)

log = logging.getLogger(__name__)

_TRACER = "weft"
CONSUMER = trace.SpanKind.CONSUMER
_state: dict[str, Any] = {"provider": None}


def enabled() -> bool:
    """Whether this process exports traces (setup_tracing found an exporter)."""
    return _state["provider"] is not None


def setup_tracing(service: str, env: Mapping[str, str] | None = None) -> None:
    """Install the tracer provider and the asyncpg instrumentation when OTEL_TRACES_EXPORTER
    names an exporter; call once, first thing in a process's main (gRPC channels,
    servers and the gateway app look at `enabled()` when they are made)."""
    env = os.environ if env is None else env
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter_name in ("", "none") or enabled():
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    exporter: SpanExporter
    if exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    elif exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER must be otlp, console or none, got {exporter_name!r}"
        )
    name = env.get("OTEL_SERVICE_NAME") or f"weft-{service}"
    provider = TracerProvider(
        resource=Resource.create({"service.name": name}), sampler=_WithoutOrphanClients()
    )
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    AsyncPGInstrumentor().instrument()
    if service == "gateway":
        # Server spans for every request (applications made from now on get them).
        from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

        AioHttpServerInstrumentor().instrument()
    _state["provider"] = provider
    atexit.register(shutdown_tracing)  # flush the last spans when the process ends
    log.info("tracing on", extra={"exporter": exporter_name, "service_name": name})


class _WithoutOrphanClients(Sampler):
    """Keeps every span of a trace that a request or a message started; drops a CLIENT
    span (a query, an outgoing call) that has no parent: a background loop's."""

    def __init__(self) -> None:
        self._inner = ParentBased(ALWAYS_ON)

    def should_sample(
        self,
        parent_context: context.Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and kind == trace.SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self._inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "WithoutOrphanClients"


def shutdown_tracing() -> None:
    """Export what is left (on SIGTERM, before the process ends)."""
    provider = _state["provider"]
    if provider is not None:
        provider.shutdown()


def tracer() -> trace.Tracer:
    return trace.get_tracer(_TRACER)


def traceparent() -> str:
    """The current context as a W3C traceparent ("" when there is none to continue)."""
    if not enabled():
        return ""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def consumer_span(name: str, headers: Mapping[str, str] | None) -> Iterator[None]:
    """A span continuing the trace a message's headers carry (a new one without)."""
    if not enabled():
        yield
        return
    parent = propagate.extract(dict(headers or {}))
    token = context.attach(parent)
    try:
        with tracer().start_as_current_span(name, kind=CONSUMER):
            yield
    finally:
        context.detach(token)


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, str | int] | None = None) -> Iterator[Any]:
    """A child span of the current one (None, and nothing recorded, when off)."""
    if not enabled():
        yield None
        return
    with tracer().start_as_current_span(name, attributes=dict(attributes or {})) as current:
        yield current


@contextlib.contextmanager
def message_spans(name: str, messages: Iterable[Mapping[str, str] | None]) -> Iterator[None]:
    """One span per message of a batch handled together, each continuing its message's
    trace (a span has one parent, so a shared one could join only one run's trace)."""
    if not enabled():
        yield
        return
    spans = [
        tracer().start_span(name, context=propagate.extract(dict(h or {})), kind=CONSUMER)
        for h in messages
    ]
    try:
        yield
    finally:
        for each in spans:
            each.end()


def grpc_client_interceptors() -> list[Any]:
    """The OpenTelemetry client interceptors for a channel (none when off)."""
    if not enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())


def grpc_server_interceptors() -> list[Any]:
    """The OpenTelemetry server interceptor (none when off)."""
    if not enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]
