"""Worker settings, read once from the environment."""

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from weftcore.config import MetricsBind, env_float, env_int, env_str, parse_bind


@dataclass(frozen=True)
class WorkerConfig:
    grpc_bind: str  # health only, for Kubernetes probes
    database_url: str
    nats_url: str
    billing_addr: str
    storage_addr: str
    log_level: str
    grace_seconds: float
    # Unique per process start: a restarted worker must not pass for its dead self.
    worker_id: str
    concurrency: int  # runs executed stage by stage at once (LLM, HTTP, review)
    jobs_in_flight: int  # jobs held at once; template-only runs among them batch
    heartbeat_seconds: float
    stale_seconds: float  # a running run with an older heartbeat has no live worker
    pending_recovery_seconds: float
    recovery_interval_seconds: float
    # Runs waiting for a concurrency slot are looked at this often (and when a run ends).
    dispatch_interval_seconds: float
    ack_wait_seconds: float
    max_deliver: int
    metrics: MetricsBind | None = None  # where /metrics is served; None: nowhere

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "WorkerConfig":
        source = os.environ if env is None else env
        base = source.get("WEFT_WORKER_ID") or socket.gethostname()
        heartbeat = env_float("WEFT_WORKER_HEARTBEAT_SECONDS", 2.0, source)
        return cls(
            grpc_bind=env_str("WEFT_GRPC_BIND", "127.0.0.1:7110", source),
            database_url=env_str("WEFT_DATABASE_URL", None, source),
            nats_url=env_str("WEFT_NATS_URL", "nats://127.0.0.1:4222", source),
            billing_addr=env_str("WEFT_BILLING_ADDR", "127.0.0.1:7104", source),
            storage_addr=env_str("WEFT_STORAGE_ADDR", "127.0.0.1:7103", source),
            log_level=env_str("WEFT_LOG_LEVEL", "INFO", source),
            grace_seconds=env_float("WEFT_GRACE_SECONDS", 10.0, source),
            worker_id=f"{base}-{secrets.token_hex(4)}",
            concurrency=env_int("WEFT_WORKER_CONCURRENCY", 16, source),
            jobs_in_flight=env_int("WEFT_WORKER_JOBS_IN_FLIGHT", 128, source),
            heartbeat_seconds=heartbeat,
            stale_seconds=env_float("WEFT_WORKER_STALE_SECONDS", max(10.0, heartbeat * 5), source),
            pending_recovery_seconds=env_float(
                "WEFT_WORKER_PENDING_RECOVERY_SECONDS", 300.0, source
            ),
            recovery_interval_seconds=env_float(
                "WEFT_WORKER_RECOVERY_INTERVAL_SECONDS", 2.0, source
            ),
            dispatch_interval_seconds=env_float(
                "WEFT_WORKER_DISPATCH_INTERVAL_SECONDS", 0.5, source
            ),
            ack_wait_seconds=env_float("WEFT_WORKER_ACK_WAIT_SECONDS", 30.0, source),
            max_deliver=env_int("WEFT_WORKER_MAX_DELIVER", 20, source),
            metrics=parse_bind(env_str("WEFT_METRICS_BIND", "0", source)),
        )
