"""Reading settings from the environment once, failing fast and clearly."""

import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(Exception):
    """A setting is missing or malformed; the process should not start."""


def env_str(name: str, default: str | None = None, env: Mapping[str, str] | None = None) -> str:
    source = os.environ if env is None else env
    value = source.get(name, default)
    if value is None or value == "":
        raise ConfigError(f"environment variable {name} is required")
    return value


def env_optional(name: str, env: Mapping[str, str] | None = None) -> str:
    """A setting that may be absent or empty ("")."""
    source = os.environ if env is None else env
    return source.get(name) or ""


def env_int(name: str, default: int | None = None, env: Mapping[str, str] | None = None) -> int:
    raw = env_str(name, None if default is None else str(default), env)
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None


def env_float(
    name: str, default: float | None = None, env: Mapping[str, str] | None = None
) -> float:
    raw = env_str(name, None if default is None else str(default), env)
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be a number, got {raw!r}") from None


def env_bool(name: str, default: bool = False, env: Mapping[str, str] | None = None) -> bool:
    raw = env_str(name, "true" if default else "false", env).lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"environment variable {name} must be true or false, got {raw!r}")


def env_list(name: str, default: str = "", env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    source = os.environ if env is None else env
    raw = source.get(name, default)
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class MetricsBind:
    host: str
    port: int


def parse_bind(raw: str) -> MetricsBind | None:
    """`"0.0.0.0:9090"` -> MetricsBind (port 0: any free one); `""` or `"0"` -> None (no
    metrics server)."""
    raw = raw.strip()
    if raw in ("", "0"):
        return None
    host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"WEFT_METRICS_BIND must look like host:port or be empty, got {raw!r}")
    return MetricsBind(host.strip("[]") or "0.0.0.0", int(port))


def metrics_bind(env: Mapping[str, str] | None = None) -> MetricsBind | None:
    return parse_bind(env_str("WEFT_METRICS_BIND", "0", env))


@dataclass(frozen=True)
class ServiceConfig:
    """Settings every gRPC service shares."""

    grpc_bind: str
    database_url: str
    nats_url: str
    log_level: str
    grace_seconds: float
    metrics: MetricsBind | None = None  # where /metrics is served; None: nowhere

    @classmethod
    def from_env(cls, default_bind: str, env: Mapping[str, str] | None = None) -> "ServiceConfig":
        return cls(
            grpc_bind=env_str("WEFT_GRPC_BIND", default_bind, env),
            database_url=env_str("WEFT_DATABASE_URL", None, env),
            nats_url=env_str("WEFT_NATS_URL", "nats://127.0.0.1:4222", env),
            log_level=env_str("WEFT_LOG_LEVEL", "INFO", env),
            grace_seconds=env_float("WEFT_GRACE_SECONDS", 10.0, env),
            metrics=parse_bind(env_str("WEFT_METRICS_BIND", "0", env)),
        )
