"""weftcore/tracing.py without a tracer provider installed (the default: off), and the
sampler that keeps background loops' queries out of the traces."""

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from weftcore import tracing
from weftcore.tracing import _WithoutOrphanClients


def test_off_by_default_nothing_is_traced_or_propagated() -> None:
    assert not tracing.enabled()
    assert tracing.traceparent() == ""
    assert tracing.grpc_client_interceptors() == []
    assert tracing.grpc_server_interceptors() == []
    with tracing.span("stage x") as span:
        assert span is None
    with tracing.consumer_span("job", {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}):
        pass


def test_the_sampler_drops_only_client_spans_without_a_parent() -> None:
    sampler = _WithoutOrphanClients()
    kinds = trace.SpanKind
    orphan = sampler.should_sample(None, 1, "SELECT", kinds.CLIENT)
    assert orphan.decision is Decision.DROP
    for kind in (kinds.SERVER, kinds.CONSUMER, kinds.INTERNAL):
        assert sampler.should_sample(None, 1, "x", kind).decision is Decision.RECORD_AND_SAMPLE
    parent = SpanContext(
        trace_id=7, span_id=9, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    within = trace.set_span_in_context(NonRecordingSpan(parent))
    child = sampler.should_sample(within, 7, "SELECT", kinds.CLIENT)
    assert child.decision is Decision.RECORD_AND_SAMPLE
