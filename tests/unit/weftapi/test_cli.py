"""The `weft` command's pure parts: typing name=value pairs, usage and --version."""

import pytest
from weftapi import Field, __version__
from weftapi.cli import EXIT_USAGE, coerce_values, main, parser

FIELDS = [
    Field(name="count", type="integer"),
    Field(name="ratio", type="number"),
    Field(name="ok", type="boolean"),
    Field(name="tone", type="select", constraints={"options": ["formal", 3]}),
    Field(name="meta", type="json"),
    Field(name="title", type="text"),
]


def test_values_are_typed_by_the_declared_fields() -> None:
    pairs = [("count", "3"), ("ratio", "1.5"), ("ok", "true"), ("tone", "3"),
             ("meta", '{"a": 1}'), ("title", "42"), ("other", "[1]"), ("loose", "x")]  # fmt: skip
    assert coerce_values(pairs, FIELDS) == {
        "count": 3, "ratio": 1.5, "ok": True, "tone": 3, "meta": {"a": 1},
        "title": "42", "other": [1], "loose": "x",
    }  # fmt: skip
    # A value that does not parse goes as text: the server names the field in its 400.
    assert coerce_values([("count", "two")], FIELDS) == {"count": "two"}


def test_version_usage_and_the_help_lists_env_and_exit_codes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as caught:
        parser().parse_args(["--version"])
    assert caught.value.code == 0 and __version__ in capsys.readouterr().out
    help_text = parser().format_help()
    assert "WEFT_API_KEY" in help_text and "WEFT_BASE_URL" in help_text
    assert "130" in help_text and "continues on the server" in help_text
    with pytest.raises(SystemExit) as caught:
        parser().parse_args(["runs", "input", "run_1", "novalue"])
    assert caught.value.code == EXIT_USAGE
    monkeypatch.delenv("WEFT_API_KEY", raising=False)
    assert main(["me"]) == EXIT_USAGE
    assert "WEFT_API_KEY" in capsys.readouterr().err
