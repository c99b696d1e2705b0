"""JSON: validated with bounded nesting, then pretty-printed."""

import json
import re
from pathlib import Path

from services.storage.extract import ExtractionError, ExtractResult, Limits, TextBuilder

# One token at a time: a whole string (skipped, so brackets inside it do not count) or a
# bracket. The closing quote is optional: an unterminated string is one token running to
# the end of the text, where a required quote made the match fail there and be retried
# from every later quote (quadratic: 100 KB of `\"` took 20 s). Possessive quantifiers
# never backtrack, so each character is read once.
_TOKENS = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]', re.DOTALL)


def check_depth(text: str, max_depth: int) -> int:
    """The nesting depth of `text`; raises ExtractionError past `max_depth`.

    Runs before json.loads so a 10,000-deep document is refused without recursion, in
    time linear in the text whatever it holds (invalid JSON is json.loads' to refuse).
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
