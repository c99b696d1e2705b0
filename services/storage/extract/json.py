"""JSON: validated with bounded nesting, then pretty-printed."""

import json
import re
from pathlib import Path

from services.storage.extract import ExtractionError, ExtractResult, Limits, TextBuilder

# Strings are skipped whole so brackets inside them do not count.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def check_depth(text: str, max_depth: int) -> int:
    """The nesting depth of `text`; raises ExtractionError past `max_depth`.

    Runs before json.loads so a 10,000-deep document is refused without recursion.
    """
    depth = deepest = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > max_depth:
                raise ExtractionError(f"The JSON is nested deeper than {max_depth} levels.")
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth -= 1
    return deepest


def extract(path: Path, limits: Limits) -> ExtractResult:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ExtractionError(f"The JSON is not UTF-8: {exc.reason} at byte {exc.start}.") from None
    depth = check_depth(text, limits.max_json_depth)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExtractionError(f"Invalid JSON: {exc}") from None
    builder = TextBuilder(limits.max_chars)
    builder.add(json.dumps(value, indent=2, ensure_ascii=False))
    return ExtractResult(
        "extracted",
        text=builder.build(),
        truncated=builder.full,
        metadata={"type": type(value).__name__, "depth": depth},
    )
