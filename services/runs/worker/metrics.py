"""Prometheus metrics of the worker process (served by weftcore.metrics.MetricsServer)."""

from prometheus_client import Counter, Histogram

LLM_CALLS = Counter(
    "weft_llm_calls_total",
    "LLM chat completions, by model id and outcome (ok or error, after retries)",
    ["model", "outcome"],
)
LLM_TOKENS = Counter(
    "weft_llm_tokens_total",
    "Tokens the providers reported, by model and direction",
    ["model", "direction"],
)
LLM_LATENCY = Histogram(
    "weft_llm_call_duration_seconds",
    "One chat completion, retries included, by model id",
    ["model"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)


def observe_llm(
    model: str, seconds: float, ok: bool, input_tokens: int = 0, output_tokens: int = 0
) -> None:
    LLM_CALLS.labels(model, "ok" if ok else "error").inc()
    LLM_LATENCY.labels(model).observe(seconds)
    if input_tokens:
        LLM_TOKENS.labels(model, "input").inc(input_tokens)
    if output_tokens:
        LLM_TOKENS.labels(model, "output").inc(output_tokens)
