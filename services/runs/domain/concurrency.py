"""Concurrency limits and priority (spec/API.md "Run features"): how many runs of a
workflow, and of an account, may hold a slot (`running` or `awaiting_input`) at once.

The workflow's limit is its definition's `concurrency_limit`; the account's comes from
its plan (WEFT_CONCURRENCY_LIMIT_<PLAN>, 0: none). Both are fixed on the run when it is
created; the writer enforces them when a run starts (services/runs/store/writer.py) and
worker/dispatch.py starts the waiting ones in their turn: the higher `priority` first.
"""

from collections.abc import Mapping
from typing import Any

from weftcore.config import ConfigError, env_int

PLANS = ("free", "pro", "team", "enterprise")
DEFAULT_PRIORITY = 5
MAX_PRIORITY = 9


def account_limits_from_env(env: Mapping[str, str]) -> dict[str, int]:
    """Per-plan limits on an account's runs holding a slot (0: no limit)."""
    limits = {plan: env_int(f"WEFT_CONCURRENCY_LIMIT_{plan.upper()}", 0, env) for plan in PLANS}
    for plan, limit in limits.items():
        if limit < 0:
            raise ConfigError(
                f"environment variable WEFT_CONCURRENCY_LIMIT_{plan.upper()} must not be"
                f" negative, got {limit}"
            )
    return limits


def run_limits(
    definition: Mapping[str, Any], plan: str, account_limits: Mapping[str, int]
) -> tuple[int | None, int | None]:
    """A new run's (workflow, account) limits; None: no limit."""
    declared = definition.get("concurrency_limit")
    workflow = declared if isinstance(declared, int) and declared > 0 else None
    account = account_limits.get(plan, 0)
    return workflow, account if account > 0 else None
