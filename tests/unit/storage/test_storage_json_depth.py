"""The JSON depth check: right on strings that hide brackets and quotes, linear on
hostile text (the old pattern was quadratic on runs of escaped quotes)."""

import json
import random
from typing import Any

import pytest

from services.storage.extract import ExtractionError
from services.storage.extract.json import check_depth

MB = 1_000_000


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ('{"a": "say \\"[hi]\\" {"}', 1),  # escaped quotes keep the string open
        ('["\\\\", ["x"]]', 2),  # an escaped backslash does not escape the quote
        ('[["\\\\\\"]"], {"k": "}}}"}]', 2),  # \\ then \" inside one string
        ('"[[[["', 0),
        ('[{"a": ["\\u005b", "]"]}]', 3),
        ('[["open', 2),  # an unterminated string ends the scan, not the depth
        ("", 0),
    ],
)
def test_depth_skips_brackets_and_escaped_quotes_inside_strings(text: str, depth: int) -> None:
    assert check_depth(text, 64) == depth


def _nested(rng: random.Random, depth: int) -> Any:
    """A random document exactly `depth` deep whose strings are full of JSON syntax."""
    tricky = ['"', "\\", "[", "]", "{", "}", '\\"', "\\\\", "a", " ", "é"]

    def text() -> str:
        return "".join(rng.choice(tricky) for _ in range(rng.randrange(8)))

    if depth == 0:
        return text()
    inner = [_nested(rng, depth - 1)] + [text() for _ in range(rng.randrange(3))]
    rng.shuffle(inner)
    if rng.random() < 0.5:
        return inner
    return {text() + str(i): value for i, value in enumerate(inner)}


def test_depth_matches_the_parsed_document() -> None:
    rng = random.Random(14)
    for _ in range(300):
        depth = rng.randrange(1, 12)
        document = json.dumps(_nested(rng, depth), ensure_ascii=rng.random() < 0.5)
        assert check_depth(document, 64) == depth, document


def test_past_the_limit_is_refused() -> None:
    assert check_depth("[" * 64 + "]" * 64, 64) == 64
    with pytest.raises(ExtractionError, match="deeper than 64"):
        check_depth("[" * 65, 64)


# The old pattern took 20 s on 100 KB of `\"` and grew with the square of the size: at
# 1 MB it would run for hours. Linear, each of these takes well under a second; the
# timeout only turns a regression into a failure instead of a hang.
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "text",
    [
        '\\"' * (MB // 2),
        '"' * MB,
        '"\\' * (MB // 2),
        "\\" * MB,
        "[" + '"\\"' * (MB // 3),
        '{"a": [' + '\\"]' * (MB // 3),
    ],
    ids=["escaped-quotes", "quotes", "quote-backslash", "backslashes", "open-string", "mixed"],
)
def test_a_megabyte_of_hostile_text_is_scanned(text: str) -> None:
    assert check_depth(text, 64) <= 2
