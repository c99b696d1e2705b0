"""Keyless snippets: calls of a public endpoint without an API key, from the same
CallSpec as keyed ones (flat body at /endpoints/<slug>, files only as multipart parts,
the run read at links.self with the answer's run token)."""

import ast
import json
import subprocess
from typing import Any

import pytest

from gateway.routes.code import keyless_code
from gateway.snippets import LANGUAGES, choose_variants, default_variants, generate
from gateway.snippets.model import call_spec
from weft.runs.v1 import runs_pb2
from weftcore.errors import InvalidArgument

BASE = "https://weft.example.com"
FIELDS: list[dict[str, Any]] = [
    {"name": "count", "type": "integer", "required": True, "constraints": {"min": 2}},
    {"name": "meta", "type": "json"},
    {"name": "note", "type": "text", "default": 'it\'s 100% "ok"\\n `x` $HOME'},
]
WITH_FILE = [*FIELDS, {"name": "doc", "type": "file", "required": True}]


def test_a_keyless_spec_posts_a_flat_body_to_the_endpoint() -> None:
    spec = call_spec(BASE, "wf_x", FIELDS, "json", slug="my-slug", keyless=True)
    assert spec.keyless and spec.create_path == "/api/v1/endpoints/my-slug"
    assert spec.json_body({"count": 2}) == {"input_text": spec.input_text, "count": 2}


def test_a_keyed_spec_posts_params_to_the_workflows_runs() -> None:
    spec = call_spec(BASE, "wf_x", FIELDS, "json", slug="my-slug")
    assert not spec.keyless and spec.create_path == "/api/v1/workflows/wf_x/runs"
    assert spec.json_body({"count": 2}) == {"input_text": spec.input_text, "params": {"count": 2}}


def test_a_keyless_spec_needs_a_slug_and_sends_files_as_parts() -> None:
    with pytest.raises(ValueError, match="slug"):
        call_spec(BASE, "wf_x", FIELDS, "json", keyless=True)
    with pytest.raises(ValueError, match="multipart"):
        call_spec(BASE, "wf_x", WITH_FILE, "json", slug="s", keyless=True)
    spec = call_spec(BASE, "wf_x", WITH_FILE, "multipart", slug="s", keyless=True)
    assert [f.path for f in spec.files] == ["./doc.pdf"] and spec.form["count"] == "2"


def test_keyless_variants_are_multipart_only_with_file_fields() -> None:
    assert default_variants(WITH_FILE, keyless=True) == ("multipart",)
    assert default_variants(FIELDS, keyless=True) == ("json",)
    assert choose_variants(WITH_FILE, True, None) == ("multipart",)
    assert choose_variants(FIELDS, True, "json") == ("json",)
    assert choose_variants(WITH_FILE, False, "json") == ("json",)
    with pytest.raises(InvalidArgument) as refused:
        choose_variants(WITH_FILE, True, "json")
    assert refused.value.param == "variant"
    assert [s["variant"] for s in generate(BASE, "wf_x", WITH_FILE, ["curl"])] == [
        "json",
        "multipart",
    ]
    keyless = generate(BASE, "wf_x", WITH_FILE, ["curl"], slug="s", keyless=True)
    assert [(s["variant"], s["auth"]) for s in keyless] == [("multipart", "none")]


@pytest.mark.parametrize(("fields", "variant"), [(FIELDS, "json"), (WITH_FILE, "multipart")])
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_keyless_snippet_calls_the_endpoint_without_a_key(
    language: str, fields: list[dict[str, Any]], variant: str
) -> None:
    [snippet] = generate(BASE, "wf_x", fields, [language], [variant], slug="s", keyless=True)
    assert (snippet["auth"], snippet["variant"]) == ("none", variant)
    code = snippet["code"]
    assert f"{BASE}" in code and "/api/v1/endpoints/s" in code
    assert "WEFT_API_KEY" not in code and "wft_live" not in code
    assert "/api/v1/workflows/" not in code and "/api/v1/workflow-runs/" not in code
    assert "/api/v1/attachments" not in code and "attachment_ids" not in code
    assert "Idempotency-Key" in code
    assert "run_token" in code and "links" in code and "self" in code and "Bearer" in code
    assert "wait" in code and "30" in code
    for name in ("count", "meta", "note"):
        assert name in code, name
    if variant == "multipart":
        assert "./doc.pdf" in code


def test_keyed_snippets_say_so() -> None:
    for snippet in generate(BASE, "wf_x", WITH_FILE):
        assert snippet["auth"] == "key" and "WEFT_API_KEY" in snippet["code"]


def test_keyless_python_sends_the_fields_at_the_top_level() -> None:
    [snippet] = generate(BASE, "wf_x", FIELDS, ["python"], ["json"], slug="s", keyless=True)
    tree = ast.parse(snippet["code"])
    [post] = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and ast.unparse(n.func) == "requests.post"
    ]
    body = next(k.value for k in post.keywords if k.arg == "json")
    assert (
        ast.unparse(body)
        == "{'input_text': 'Your instruction or text for the workflow.', **params}"
    )
    headers = next(k.value for k in post.keywords if k.arg == "headers")
    assert (
        "Authorization" not in ast.unparse(headers)
        and "HEADERS: dict[str, str] = {}" in snippet["code"]
    )


def test_keyless_curl_payload_is_the_exact_flat_json() -> None:
    [snippet] = generate(BASE, "wf_x", FIELDS, ["curl"], ["json"], slug="s", keyless=True)
    code = snippet["code"]
    start = code.index("PAYLOAD=")
    end = code.index("RUN=", start)
    script = code[start:end] + 'printf "%s" "$PAYLOAD"\n'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    body = json.loads(done.stdout)
    assert body == {
        "input_text": "Your instruction or text for the workflow.",
        "count": 2,
        "meta": {"example": "value"},
        "note": FIELDS[2]["default"],
    }
    assert '-H "$AUTH"' not in code and "field run_token" in code


def _workflow(auth: str, version: int) -> runs_pb2.Workflow:
    endpoint = {"slug": "s", "auth": auth}
    return runs_pb2.Workflow(
        id="wf_x", slug="s", version=version, endpoint_json=json.dumps(endpoint)
    )


def test_code_is_keyless_by_default_only_for_a_published_public_endpoint() -> None:
    assert keyless_code(_workflow("public", 2), None) is True
    assert keyless_code(_workflow("required", 2), None) is False
    # Before the first publish the settings shown are the draft's: no endpoint yet.
    assert keyless_code(_workflow("public", 0), None) is False
    assert keyless_code(_workflow("public", 2), "key") is False
    assert keyless_code(_workflow("public", 2), "none") is True


@pytest.mark.parametrize(("auth", "version"), [("required", 1), ("public", 0)])
def test_keyless_code_for_an_endpoint_that_needs_a_key_is_refused(auth: str, version: int) -> None:
    with pytest.raises(InvalidArgument) as refused:
        keyless_code(_workflow(auth, version), "none")
    assert refused.value.param == "auth"
