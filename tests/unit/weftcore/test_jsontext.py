"""jsontext.dumps: compact JSON, the same document whichever encoder wrote it."""

import json

import pytest

from weftcore.jsontext import dumps


@pytest.mark.parametrize(
    "value",
    [
        {"run": {"id": "run_1", "result": None, "cost_cents": 0, "tags": ["a", "b"]}},
        {"text": 'Grüße, 東京 \u2028 "quoted" \\ back'},
        {"huge": 10**30, "negative": -(10**25)},  # beyond orjson's 64 bits
        {1: "int key", "x": [1.5, True]},  # a key orjson refuses
    ],
)
def test_compact_json_that_parses_back_to_the_same_document(value: object) -> None:
    text = dumps(value)
    assert json.loads(text) == json.loads(json.dumps(value))
    # Compact: what the standard library writes without spaces.
    assert text == json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))


def test_non_ascii_is_kept_as_utf8() -> None:
    assert dumps({"city": "東京"}) == '{"city":"東京"}'
