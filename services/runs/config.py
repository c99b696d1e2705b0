"""Runs service settings (peers, limits, workflow files, webhooks), read once from the
environment at start. The settings every service shares are weftcore.config.ServiceConfig;
the worker has its own (services/runs/worker/config.py)."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.runs.delivery.webhooks import WebhookConfig
from services.runs.domain.concurrency import account_limits_from_env
from services.runs.domain.timeouts import DEFAULT_MAX_SECONDS
from services.runs.store.ratelimit import limits_from_env
from weftcore.config import ConfigError, env_int, env_str

# The repository's example workflows; WEFT_WORKFLOWS_DIR="" turns loading off.
DEFAULT_WORKFLOWS_DIR = Path(__file__).resolve().parents[2] / "workflows"


@dataclass(frozen=True)
class RunsConfig:
    billing_addr: str
    storage_addr: str
    # Runs per account per rolling hour, by plan (WEFT_RATE_LIMIT_<PLAN>).
    rate_limits: Mapping[str, int]
    # Open long-polls and event streams per account in one process (429 beyond).
    max_open_waits_per_account: int
    # Definitions applied at start ("" applies none).
    workflows_dir: str
    # Deliveries; its `policy` is also the rule a run's webhook_url must pass.
    webhooks: WebhookConfig
    # The longest a run may take, and what it gets when neither call nor workflow says.
    max_run_timeout_seconds: int = DEFAULT_MAX_SECONDS
    # An account's runs holding a slot at once, by plan (WEFT_CONCURRENCY_LIMIT_<PLAN>, 0: none).
    account_concurrency: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "RunsConfig":
        source = os.environ if env is None else env
        config = cls(
            billing_addr=env_str("WEFT_BILLING_ADDR", "127.0.0.1:7104", source),
            storage_addr=env_str("WEFT_STORAGE_ADDR", "127.0.0.1:7103", source),
            rate_limits=limits_from_env(source),
            max_open_waits_per_account=env_int("WEFT_MAX_OPEN_WAITS_PER_ACCOUNT", 100, source),
            workflows_dir=source.get("WEFT_WORKFLOWS_DIR", str(DEFAULT_WORKFLOWS_DIR)),
            webhooks=WebhookConfig.from_env(source),
            account_concurrency=account_limits_from_env(source),
            max_run_timeout_seconds=env_int(
                "WEFT_RUN_TIMEOUT_MAX_SECONDS", DEFAULT_MAX_SECONDS, source
            ),
        )
        if config.max_open_waits_per_account <= 0:
            raise ConfigError(
                "environment variable WEFT_MAX_OPEN_WAITS_PER_ACCOUNT must be positive,"
                f" got {config.max_open_waits_per_account}"
            )
        if config.max_run_timeout_seconds <= 0:
            raise ConfigError(
                "environment variable WEFT_RUN_TIMEOUT_MAX_SECONDS must be positive,"
                f" got {config.max_run_timeout_seconds}"
            )
        return config
