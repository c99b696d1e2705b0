"""Gateway settings, read once from the environment."""

from collections.abc import Mapping
from dataclasses import dataclass

from weftcore.config import env_float, env_int, env_list, env_optional, env_str


@dataclass(frozen=True)
class GatewayConfig:
    host: str
    port: int
    processes: int
    public_base_url: str
    auth_addr: str
    runs_addr: str
    storage_addr: str
    billing_addr: str
    nats_url: str
    database_url: str
    log_level: str
    max_json_bytes: int
    max_upload_bytes: int
    max_table_upload_bytes: int
    max_form_bytes: int
    auth_cache_seconds: float
    grace_seconds: float
    cors_origins: tuple[str, ...]
    idle_timeout_seconds: float
    body_min_bytes_per_second: int
    body_rate_window_seconds: float
    # Public endpoints: proxies in front whose X-Forwarded-For entries are trusted
    # (0: the peer address is the client's), and the key of keyless callers' run tokens.
    trusted_proxy_hops: int
    run_token_secret: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "GatewayConfig":
        port = env_int("WEFT_HTTP_PORT", 8080, env)
        return cls(
            host=env_str("WEFT_HTTP_HOST", "127.0.0.1", env),
            port=port,
            processes=env_int("WEFT_GATEWAY_PROCESSES", 1, env),
            public_base_url=env_str("WEFT_PUBLIC_BASE_URL", f"http://127.0.0.1:{port}", env),
            auth_addr=env_str("WEFT_AUTH_ADDR", "127.0.0.1:7101", env),
            runs_addr=env_str("WEFT_RUNS_ADDR", "127.0.0.1:7102", env),
            storage_addr=env_str("WEFT_STORAGE_ADDR", "127.0.0.1:7103", env),
            billing_addr=env_str("WEFT_BILLING_ADDR", "127.0.0.1:7104", env),
            nats_url=env_str("WEFT_NATS_URL", "nats://127.0.0.1:4222", env),
            database_url=env_str("WEFT_DATABASE_URL", None, env),
            log_level=env_str("WEFT_LOG_LEVEL", "INFO", env),
            max_json_bytes=env_int("WEFT_MAX_JSON_BYTES", 1024 * 1024, env),
            max_upload_bytes=env_int("WEFT_MAX_UPLOAD_BYTES", 50 * 1024 * 1024, env),
            max_table_upload_bytes=env_int("WEFT_MAX_TABLE_UPLOAD_BYTES", 20 * 1024 * 1024, env),
            max_form_bytes=env_int("WEFT_MAX_FORM_BYTES", 100 * 1024 * 1024, env),
            auth_cache_seconds=env_float("WEFT_AUTH_CACHE_SECONDS", 5.0, env),
            grace_seconds=env_float("WEFT_GRACE_SECONDS", 10.0, env),
            cors_origins=env_list("WEFT_CORS_ORIGINS", "", env),
            idle_timeout_seconds=env_float("WEFT_HTTP_IDLE_TIMEOUT_SECONDS", 15.0, env),
            body_min_bytes_per_second=env_int("WEFT_HTTP_BODY_MIN_BYTES_PER_SECOND", 1024, env),
            body_rate_window_seconds=env_float("WEFT_HTTP_BODY_RATE_WINDOW_SECONDS", 10.0, env),
            trusted_proxy_hops=env_int("WEFT_TRUSTED_PROXY_HOPS", 0, env),
            run_token_secret=env_optional("WEFT_RUN_TOKEN_SECRET", env),
        )
