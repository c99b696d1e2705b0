"""A run's time limit (`timeout_seconds`, spec/API.md "Run features"): the call's, else
its workflow's, else the operator's maximum; never more than that maximum.

A call that asks for more than the maximum is refused (the caller can fix it); a
workflow that does is held to it (the maximum may have been lowered since it was written).
"""

from collections.abc import Mapping
from typing import Any

from weftcore.errors import InvalidArgument

DEFAULT_MAX_SECONDS = 86_400  # a day: human reviews wait within a run's time


def run_timeout(definition: Mapping[str, Any], asked: int | None, maximum: int) -> int:
    """The run's `timeout_seconds`."""
    if asked is not None:
        if not 1 <= asked <= maximum:
            raise InvalidArgument(
                f"timeout_seconds must be between 1 and {maximum:,}.", param="timeout_seconds"
            )
        return asked
    declared = definition.get("timeout_seconds")
    if isinstance(declared, int) and declared > 0:
        return min(declared, maximum)
    return maximum
