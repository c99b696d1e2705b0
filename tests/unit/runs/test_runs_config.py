"""RunsConfig: every runs-service setting read once, with its documented default; a
malformed value stops the start with the variable's name."""

from datetime import timedelta

import pytest

from services.runs.config import DEFAULT_WORKFLOWS_DIR, RunsConfig
from services.runs.domain.ssrf import SSRFPolicy
from services.runs.store.ratelimit import DEFAULT_LIMITS
from weftcore.config import ConfigError


def test_defaults() -> None:
    config = RunsConfig.from_env({})
    assert (config.billing_addr, config.storage_addr) == ("127.0.0.1:7104", "127.0.0.1:7103")
    assert config.rate_limits == DEFAULT_LIMITS
    assert config.max_open_waits_per_account == 100
    assert config.workflows_dir == str(DEFAULT_WORKFLOWS_DIR)
    assert DEFAULT_WORKFLOWS_DIR.is_dir()
    hooks = config.webhooks
    assert (hooks.timeout_seconds, hooks.backoff_base_seconds) == (10.0, 1.0)
    assert (hooks.backoff_cap_seconds, hooks.retry_window) == (3600.0, timedelta(hours=24))
    assert hooks.public_base_url == "" and hooks.policy == SSRFPolicy()


def test_values_from_the_environment() -> None:
    config = RunsConfig.from_env(
        {
            "WEFT_BILLING_ADDR": "billing:7104",
            "WEFT_RATE_LIMIT_PRO": "7",
            "WEFT_MAX_OPEN_WAITS_PER_ACCOUNT": "3",
            "WEFT_RUN_TIMEOUT_MAX_SECONDS": "600",
            "WEFT_CONCURRENCY_LIMIT_TEAM": "4",
            "WEFT_WORKFLOWS_DIR": "",  # loading off
            "WEFT_WEBHOOK_RETRY_HOURS": "0.5",
            "WEFT_WEBHOOK_ALLOW_LOOPBACK": "true",
        }
    )
    assert config.billing_addr == "billing:7104"
    assert config.rate_limits["pro"] == 7 and config.rate_limits["team"] == 5000
    assert config.max_open_waits_per_account == 3
    assert config.max_run_timeout_seconds == 600
    assert config.account_concurrency["team"] == 4 and config.account_concurrency["pro"] == 0
    assert config.workflows_dir == ""
    assert config.webhooks.retry_window == timedelta(minutes=30)
    assert config.webhooks.policy.allow_loopback


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEFT_RATE_LIMIT_TEAM", "lots"),
        ("WEFT_RATE_LIMIT_FREE", "-1"),
        ("WEFT_MAX_OPEN_WAITS_PER_ACCOUNT", "0"),
        ("WEFT_MAX_OPEN_WAITS_PER_ACCOUNT", "1.5"),
        ("WEFT_RUN_TIMEOUT_MAX_SECONDS", "0"),
        ("WEFT_CONCURRENCY_LIMIT_PRO", "-1"),
        ("WEFT_WEBHOOK_TIMEOUT_SECONDS", "0"),
        ("WEFT_WEBHOOK_BACKOFF_BASE_SECONDS", "-1"),
        ("WEFT_WEBHOOK_BACKOFF_CAP_SECONDS", "soon"),
        ("WEFT_WEBHOOK_RETRY_HOURS", "-2"),
        ("WEFT_WEBHOOK_ALLOW_LOOPBACK", "maybe"),
        ("WEFT_BILLING_ADDR", ""),
    ],
)
def test_a_malformed_value_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        RunsConfig.from_env({name: value})


def test_the_config_is_frozen() -> None:
    config = RunsConfig.from_env({})
    with pytest.raises(AttributeError):
        config.workflows_dir = "elsewhere"  # type: ignore[misc]
