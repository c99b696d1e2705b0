"""Generated client code: typed placeholders per field type, and code that parses."""

import ast
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.snippets import LANGUAGES, default_variants, generate
from gateway.snippets.model import call_spec, form_value, placeholder
from gateway.snippets.php import php

BASE = "https://weft.example.com"
FIELDS: list[dict[str, Any]] = [
    {"name": "count", "type": "integer", "required": True, "constraints": {"min": 2, "max": 9}},
    {"name": "tone", "type": "select", "constraints": {"options": ["formal", "casual"]}},
    {"name": "ratio", "type": "number", "constraints": {"max": 1}},
    {"name": "flag", "type": "boolean"},
    {"name": "meta", "type": "json"},
    {"name": "title", "type": "text", "constraints": {"min_length": 20}},
    {"name": "note", "type": "text", "default": 'it\'s 100% "ok"\\n `x` $HOME'},
    {"name": "doc", "type": "file", "required": True},
]


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ({"name": "n", "type": "integer", "constraints": {"min": 5}}, 5),
        ({"name": "n", "type": "integer"}, 1),
        ({"name": "n", "type": "number", "constraints": {"max": 1}}, 1),
        ({"name": "n", "type": "number"}, 1.5),
        ({"name": "b", "type": "boolean"}, True),
        ({"name": "s", "type": "select", "constraints": {"options": [3, 4]}}, 3),
        ({"name": "j", "type": "json"}, {"example": "value"}),
        ({"name": "t", "type": "text"}, "example t"),
        ({"name": "t", "type": "text", "constraints": {"max_length": 4}}, "exam"),
        ({"name": "t", "type": "text", "default": "hi"}, "hi"),
    ],
)
def test_placeholders_have_the_declared_type_and_pass_constraints(
    field: dict[str, Any], expected: Any
) -> None:
    value = placeholder(field)
    assert value == expected and type(value) is type(expected)


def test_text_placeholder_meets_min_length() -> None:
    assert len(placeholder({"name": "t", "type": "text", "constraints": {"min_length": 20}})) == 20


def test_form_values_are_what_the_multipart_api_coerces() -> None:
    assert [form_value(v) for v in (True, 3, 1.5, "x", {"a": [1]})] == [
        "true",
        "3",
        "1.5",
        "x",
        '{"a":[1]}',
    ]


def test_file_fields_become_local_paths_not_params() -> None:
    spec = call_spec(BASE + "/", "wf_x", FIELDS, "multipart")
    assert spec.base_url == BASE
    assert [f.name for f in spec.files] == ["doc"]
    assert "doc" not in spec.params and "doc" not in spec.form
    assert spec.form["count"] == "2" and spec.params["count"] == 2


def test_variants_default_to_multipart_only_with_file_fields() -> None:
    assert default_variants(FIELDS) == ("json", "multipart")
    assert default_variants(FIELDS[:2]) == ("json",)
    got = generate(BASE, "wf_x", FIELDS[:2])
    assert [(s["language"], s["variant"]) for s in got] == [(lang, "json") for lang in LANGUAGES]


@pytest.mark.parametrize("variant", ["json", "multipart"])
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_snippet_has_the_essentials(language: str, variant: str) -> None:
    [snippet] = generate(BASE, "wf_x", FIELDS, [language], [variant])
    code = snippet["code"]
    assert BASE in code
    assert "/api/v1/workflows/wf_x/runs" in code
    assert "Bearer" in code and "WEFT_API_KEY" in code
    assert "Idempotency-Key" in code
    assert "wait" in code and "30" in code
    assert "./doc.pdf" in code
    for name in ("count", "tone", "ratio", "flag", "meta", "title", "note"):
        assert name in code, name
    if variant == "json":
        assert "/api/v1/attachments" in code  # the file is uploaded first, then referenced


def test_python_snippet_parses_and_sends_typed_params() -> None:
    [snippet] = generate(BASE, "wf_x", FIELDS, ["python"], ["json"])
    tree = ast.parse(snippet["code"])
    assigns = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "params"
    ]
    params = ast.literal_eval(assigns[0].value)
    assert (
        params["count"] == 2 and params["flag"] is True and params["meta"] == {"example": "value"}
    )
    assert params["note"] == FIELDS[6]["default"]


def test_php_literals() -> None:
    assert php({}) == "(object) []"
    assert php("it's \\") == "'it\\'s \\\\'"
    assert php([True, None, 1.5]) == "[\n    true,\n    null,\n    1.5,\n]"


def _run_tool(args: list[str], tmp_path: Path) -> None:
    if shutil.which(args[0]) is None:
        pytest.skip(f"{args[0]} is not installed")
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("keyless", [False, True])
@pytest.mark.parametrize("variant", ["json", "multipart"])
@pytest.mark.parametrize(
    ("language", "file", "check"),
    [
        ("curl", "run.sh", ["bash", "-n", "run.sh"]),
        ("node", "run.js", ["node", "--check", "run.js"]),
        ("php", "run.php", ["php", "-l", "run.php"]),
        ("go", "main.go", ["go", "vet", "main.go"]),
    ],
)
def test_snippets_pass_their_language_checker(
    language: str, file: str, check: list[str], variant: str, keyless: bool, tmp_path: Path
) -> None:
    # Keyless JSON exists only without file fields (files come as multipart parts).
    fields = FIELDS[:-1] if keyless and variant == "json" else FIELDS
    [snippet] = generate(BASE, "wf_x", fields, [language], [variant], slug="s", keyless=keyless)
    (tmp_path / file).write_text(snippet["code"])
    _run_tool(check, tmp_path)


def test_curl_payload_is_exact_json_with_the_uploaded_id(tmp_path: Path) -> None:
    [snippet] = generate(BASE, "wf_x", FIELDS, ["curl"], ["json"])
    code = snippet["code"]
    start = code.index("PAYLOAD=")
    end = code.index("RUN=", start)
    script = code[start:end] + 'printf "%s" "$PAYLOAD"\n'
    done = subprocess.run(
        ["bash", "-c", script], env={"ATT_0": "att_123"}, capture_output=True, text=True
    )
    body = json.loads(done.stdout)
    assert body["params"]["doc"] == "att_123"
    assert body["params"]["note"] == FIELDS[6]["default"]
    assert body["input_text"]
