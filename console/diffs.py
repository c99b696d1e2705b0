"""Differences between workflow definitions, as unified diffs of their YAML (pure)."""

import difflib
from typing import Any

import yaml


def as_yaml(definition: Any) -> str:
    return str(yaml.safe_dump(definition, sort_keys=False, allow_unicode=True))


def definition_diff(before: Any, after: Any, before_name: str, after_name: str) -> str:
    """A unified diff (empty when nothing changed)."""
    lines = difflib.unified_diff(
        as_yaml(before).splitlines(keepends=True),
        as_yaml(after).splitlines(keepends=True),
        fromfile=before_name,
        tofile=after_name,
    )
    return "".join(lines)
