"""Typed values against declared fields: run `params` and human-review `values`.

Errors carry `param` as the path of the bad value (`params.max_projects`).
"""

import math
import re
from typing import Any

from weftcore.errors import InvalidArgument, ResourceExhausted

MISSING_PARAM = "MISSING_PARAM"


def _type_error(path: str, expected: str) -> InvalidArgument:
    return InvalidArgument(f"{path} must be {expected}.", param=path)


def _check_range(value: float, c: dict[str, Any], path: str) -> None:
    if "min" in c and value < c["min"]:
        raise InvalidArgument(f"{path} must be at least {c['min']}.", param=path)
    if "max" in c and value > c["max"]:
        raise InvalidArgument(f"{path} must be at most {c['max']}.", param=path)


def _check_text(value: str, c: dict[str, Any], path: str) -> None:
    if "min_length" in c and len(value) < c["min_length"]:
        raise InvalidArgument(f"{path} must be at least {c['min_length']} characters.", param=path)
    if "max_length" in c and len(value) > c["max_length"]:
        raise InvalidArgument(f"{path} must be at most {c['max_length']} characters.", param=path)
    if "pattern" in c and re.fullmatch(c["pattern"], value) is None:
        raise InvalidArgument(f"{path} must match the pattern {c['pattern']}.", param=path)


def validate_value(field: dict[str, Any], value: Any, path: str) -> Any:
    """The value checked (and normalised, e.g. 3.0 -> 3 for integers) against `field`."""
    kind = field["type"]
    c = field.get("constraints") or {}
    if kind == "text":
        if not isinstance(value, str):
            raise _type_error(path, "a string")
        _check_text(value, c, path)
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(path, "a number")
        if not math.isfinite(value):
            raise _type_error(path, "a finite number")
        _check_range(value, c, path)
        return value
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(path, "an integer")
        _check_range(value, c, path)
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _type_error(path, "true or false")
        return value
    if kind == "json":
        return value  # any JSON value; it arrived parsed
    if kind == "select":
        options = c.get("options", [])
        # bool is an int in Python: compare type and value so true != 1.
        if not any(type(value) is type(o) and value == o for o in options):
            shown = ", ".join(repr(o) for o in options)
            raise InvalidArgument(f"{path} must be one of: {shown}.", param=path)
        return value
    if kind == "file":
        if not isinstance(value, str) or not value.startswith("att_"):
            raise _type_error(path, "an attachment id (att_...)")
        return value
    raise InvalidArgument(f"{path} has an unknown type {kind!r}.", param=path)


def validate_values(fields: list[dict[str, Any]], values: Any, prefix: str) -> dict[str, Any]:
    """Every declared field checked; defaults applied; unknown or missing ones are 400.

    A null value counts as absent. Every declared field is in the answer, null when it
    was omitted and has no default, so templates can test `params.x` without tripping
    over an undefined name.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise InvalidArgument(f"{prefix} must be an object.", param=prefix)
    declared = {f["name"]: f for f in fields}
    for name in values:
        if name not in declared:
            raise InvalidArgument(
                f"Unknown parameter {prefix}.{name}: the workflow declares no such field.",
                param=f"{prefix}.{name}",
            )
    out: dict[str, Any] = {}
    for field in fields:
        name = field["name"]
        path = f"{prefix}.{name}"
        value = values.get(name)
        if value is None:
            if field.get("required", False):
                raise InvalidArgument(
                    f"Missing required parameter {path}.", code=MISSING_PARAM, param=path
                )
            out[name] = field.get("default")
            continue
        out[name] = validate_value(field, value, path)
    return out


def check_files(
    fields: list[dict[str, Any]], values: dict[str, Any], attachments: dict[str, Any]
) -> None:
    """Each `file` field's attachment (`attachments`: id -> its kind and byte_size) is of
    a kind the field accepts (400) and within its size cap (413 PAYLOAD_TOO_LARGE)."""
    for field in fields:
        att_id = values.get(field["name"]) if field["type"] == "file" else None
        attachment = attachments.get(att_id) if att_id else None
        if attachment is None:
            continue
        path = f"params.{field['name']}"
        c = field.get("constraints", {})
        kinds = c.get("kinds")
        if kinds and attachment.kind not in kinds:
            shown = " or ".join(kinds)
            kind = attachment.kind or "of no known kind"
            raise InvalidArgument(f"{path} must be a {shown} file; {att_id} is {kind}.", param=path)
        cap = c.get("max_bytes")
        if cap is not None and attachment.byte_size > cap:
            raise ResourceExhausted(
                f"{path} is {attachment.byte_size:,} bytes; this field takes at most {cap:,}.",
                code="PAYLOAD_TOO_LARGE",
                param=path,
            )


def file_values(fields: list[dict[str, Any]], values: dict[str, Any]) -> list[str]:
    """Attachment ids given in `file` fields (they need the same ownership check)."""
    return [
        values[f["name"]]
        for f in fields
        if f["type"] == "file" and values.get(f["name"]) is not None
    ]
