"""Typed values from HTML form fields, for declared fields (human review; pure)."""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from weftcore.errors import InvalidArgument


def _one(field: Mapping[str, Any], raw: str) -> Any:
    kind = field.get("type", "text")
    name = str(field.get("name"))
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
        if kind == "json":
            return json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be a valid {kind}.", param=name) from None
    return raw


def form_values(fields: Sequence[Mapping[str, Any]], form: Mapping[str, str]) -> dict[str, Any]:
    """Declared fields from a form: checkboxes are booleans, empty optional fields are
    left out (the service applies defaults and validates everything)."""
    values: dict[str, Any] = {}
    for field in fields:
        name = str(field.get("name"))
        if field.get("type") == "boolean":
            values[name] = form.get(name) in ("on", "true", "1")
            continue
        raw = form.get(name, "")
        if raw == "" and not field.get("required"):
            continue
        values[name] = _one(field, raw)
    return values
