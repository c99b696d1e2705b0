"""What a client sends, checked once at the edge before any service sees it.

PostgreSQL refuses NUL in text, protobuf refuses strings that are not UTF-8 (a lone
surrogate such as `"\\ud800"` is valid JSON but not UTF-8), deep nesting exhausts the
recursion of every encoder on the way, and an integer of thousands of digits is neither a
protobuf nor a JSON number anyone can use. Each of these would surface as a 5xx deep in
a service; here they become a 400 naming the offending field.
"""

import json
from typing import Any

from weftcore.errors import InvalidArgument

MAX_JSON_DEPTH = 64
# Integers must fit where they go: protobuf int64 and PostgreSQL bigint.
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)
# Path segments and query values are ids, cursors, enums and small numbers.
MAX_URL_VALUE_CHARS = 1024


class _LongInt(str):
    """An integer literal too long to convert safely; judged with its path by the walk."""


def _parse_int(literal: str) -> int | _LongInt:
    # int() of a 5,000-digit literal raises ValueError (and costs quadratic time before
    # that limit): keep long literals as text until the walk reports them.
    return int(literal) if len(literal) <= 19 else _LongInt(literal)


def _parse_constant(name: str) -> Any:
    raise InvalidArgument(f"{name} is not a JSON number.", code="INVALID_JSON")


def parse_json(raw: bytes | str) -> Any:
    """The JSON document, every value checked (see `check_value`); 400 otherwise."""
    try:
        data = json.loads(raw, parse_int=_parse_int, parse_constant=_parse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(
            f"Request body is not valid JSON: {exc}.", code="INVALID_JSON"
        ) from None
    except RecursionError:
        raise _too_deep("") from None
    return check_value(data)


def _too_deep(path: str) -> InvalidArgument:
    return InvalidArgument(
        f"JSON is nested deeper than {MAX_JSON_DEPTH} levels.",
        code="INVALID_JSON",
        param=path or None,
    )


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored as text (None: it can)."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def check_text(text: str, param: str) -> str:
    """`text`, or 400 INVALID_PARAM naming `param` when it cannot be stored."""
    problem = text_problem(text)
    if problem is not None:
        raise InvalidArgument(f"{param or 'A string'} {problem}.", param=param or None)
    return text


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def check_value(value: Any) -> Any:
    """`value` with long integer literals converted, once every string (keys too) is
    storable text, every integer fits in 64 bits and nesting is at most MAX_JSON_DEPTH.
    Errors name the path of the value (`params.rows[3].name`). Iterative: the walk
    itself cannot run out of stack."""
    root: list[Any] = [value]
    # (container, key, path, depth) of every value still to check.
    todo: list[tuple[Any, Any, str, int]] = [(root, 0, "", 0)]
    while todo:
        holder, key, path, depth = todo.pop()
        item = holder[key]
        if isinstance(item, _LongInt):
            number = int(item) if len(item) <= 20 else None
            if number is None or not MIN_INT <= number <= MAX_INT:
                raise InvalidArgument(
                    f"{path or 'The body'} is an integer outside the 64-bit range.",
                    param=path or None,
                )
            holder[key] = number
        elif isinstance(item, str):
            check_text(item, path)
        elif isinstance(item, int) and not isinstance(item, bool):
            if not MIN_INT <= item <= MAX_INT:
                raise InvalidArgument(
                    f"{path or 'The body'} is an integer outside the 64-bit range.",
                    param=path or None,
                )
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise _too_deep(path)
            if isinstance(item, dict):
                for name in item:
                    problem = text_problem(name)
                    if problem is not None:
                        where = f"in {path} " if path else ""
                        raise InvalidArgument(
                            f"An object key {where}{problem}.", param=path or None
                        )
                    todo.append((item, name, _join(path, name), depth + 1))
            else:
                todo.extend((item, i, _join(path, i), depth + 1) for i in range(len(item)))
    return root[0]


def check_url_values(values: dict[str, str] | Any, kind: str) -> None:
    """Path segments or query values: storable text of a bounded length (400 naming
    the parameter)."""
    for name, raw in values.items():
        if not isinstance(raw, str):
            continue
        if len(raw) > MAX_URL_VALUE_CHARS:
            raise InvalidArgument(
                f"{kind} {name} is over {MAX_URL_VALUE_CHARS} characters.", param=name
            )
        problem = text_problem(raw)
        if problem is None and any(c < " " or c == "\x7f" for c in raw):
            problem = "contains a control character"
        if problem is not None:
            raise InvalidArgument(f"{kind} {name} {problem}.", param=name)
