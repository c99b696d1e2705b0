"""Prometheus metrics of the storage process (served by weftcore.metrics.MetricsServer)."""

from prometheus_client import Histogram

EXTRACTION_DURATION = Histogram(
    "weft_storage_extraction_duration_seconds",
    "Text extraction of one upload, by kind and status (extracted, failed, not_applicable)",
    ["kind", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def observe_extraction(kind: str, status: str, seconds: float) -> None:
    EXTRACTION_DURATION.labels(kind or "unknown", status).observe(seconds)
