"""gateway/openapi.yaml as generators and readers meet it: examples everywhere and valid,
objects named, enums complete (error codes read from the source, events from weftcore),
webhooks that say what the runs service really sends."""

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from jsonschema import Draft202012Validator

from gateway.openapi_spec import HTTP_METHODS, document, schemas_with_refs
from services.runs.delivery import webhooks
from tests.support.json_tree import every_node
from weftcore import events

ROOT = Path(__file__).parents[3]
SOURCES = ("gateway", "services", "weftcore", "admin")
CODE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")
DOC = document("http://x")
COMPONENTS = DOC["components"]


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/")]
        node = target
    return node


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": COMPONENTS})


def _operations() -> Iterator[tuple[str, dict[str, Any]]]:
    for section in ("paths", "webhooks"):
        for path, item in DOC[section].items():
            for method, op in item.items():
                if method in HTTP_METHODS:
                    yield f"{method.upper()} {path}", op


def _examples(media: dict[str, Any]) -> list[Any]:
    found = [media["example"]] if "example" in media else []
    return found + [_deref(e)["value"] for e in media.get("examples", {}).values()]


def _media_types() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, op in _operations():
        body = op.get("requestBody")
        for kind, media in (_deref(body)["content"] if body else {}).items():
            yield f"{name} request {kind}", media
        for status, response in op["responses"].items():
            for kind, media in _deref(response).get("content", {}).items():
                yield f"{name} {status} {kind}", media


def test_valid_against_the_openapi_31_meta_schema() -> None:
    schemathesis.openapi.from_dict(DOC).validate()


def test_no_key_is_prose() -> None:
    """A comma in an unquoted YAML flow mapping (`{description: a, b}`) splits the text
    into a key of its own; the meta-schema does not see it inside a schema."""
    for node in every_node(DOC):
        if isinstance(node, dict):
            for key in node:
                assert not re.search(r"\s", key), f"{key!r} in {node}"
    # ... nor a one-word tail (`{description: a, b}` -> "b": null): only examples hold nulls.

    def no_nulls(node: Any) -> None:
        if isinstance(node, dict):
            assert None not in node.values(), node
            for key, value in node.items():
                if key not in ("example", "examples"):
                    no_nulls(value)
        elif isinstance(node, list):
            for value in node:
                no_nulls(value)

    no_nulls({**DOC, "components": {k: v for k, v in COMPONENTS.items() if k != "examples"}})


def test_every_request_and_response_body_has_an_example() -> None:
    missing = [name for name, media in _media_types() if not _examples(media)]
    assert not missing, missing


@pytest.mark.parametrize("name", [name for name, _ in _media_types()])
def test_every_example_is_valid_against_its_schema(name: str) -> None:
    media = dict(_media_types())[name]
    validator = _validator(media["schema"])
    for example in _examples(media):
        validator.validate(example)


def test_parameter_and_header_examples_are_valid() -> None:
    checked = 0
    for node in every_node(DOC):
        if isinstance(node, dict) and "schema" in node and "example" in node:
            _validator(node["schema"]).validate(node["example"])
            checked += 1
    assert checked > 20


def test_every_object_with_properties_and_every_enum_is_a_named_component() -> None:
    """Generators invent names (or drop schemas) for inline ones."""
    for name, schema in COMPONENTS["schemas"].items():
        inner = [schema[k] for k in schema if k not in ("properties", "oneOf", "anyOf")]
        inner += list(schema.get("properties", {}).values())
        inner += schema.get("oneOf", []) + schema.get("anyOf", [])
        for node in every_node(inner):
            if isinstance(node, dict) and node.get("type") in ("object", ["object", "null"]):
                assert "properties" not in node, (name, node)
            assert not (isinstance(node, dict) and "enum" in node), (name, node)
    for node in every_node([DOC["paths"], DOC["webhooks"], COMPONENTS["responses"]]):
        if isinstance(node, dict) and "schema" in node:
            schema = node["schema"]
            assert "$ref" in schema or schema.get("type") in ("string", "integer"), schema


def test_every_array_has_items_and_nullables_are_refs_or_type_lists() -> None:
    for node in every_node(COMPONENTS["schemas"]):
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind == "array" or (isinstance(kind, list) and "array" in kind):
            assert "items" in node, node
        for branch in node.get("oneOf", []) + node.get("anyOf", []):
            assert "$ref" in branch or branch == {"type": "null"}, node


# -- error codes: read from the source, so the enum cannot drift --------------------------


def _python_files(*roots: str) -> Iterator[Path]:
    for root in roots:
        yield from (p for p in (ROOT / root).rglob("*.py") if "_pb2" not in p.name)


def _trees(*roots: str) -> list[ast.Module]:
    return [ast.parse(p.read_text(encoding="utf-8")) for p in _python_files(*roots)]


def _constants(trees: list[ast.Module]) -> dict[str, set[str]]:
    """Module-level NAME = "CODE" assignments, every module together."""
    found: dict[str, set[str]] = {}
    for tree in trees:
        for stmt in tree.body:
            if (
                isinstance(stmt, ast.Assign)
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
                and CODE.match(stmt.value.value)
            ):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        found.setdefault(target.id, set()).add(stmt.value.value)
    return found


def _resolve(node: ast.expr, constants: dict[str, set[str]]) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.match(node.value):
        return {node.value}
    if isinstance(node, ast.Name):
        return constants.get(node.id, set())
    return set()


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def api_error_codes() -> set[str]:
    """Every public code a WeftError can carry: `default_code`s, and `code=` arguments."""
    trees = _trees(*SOURCES)
    constants = _constants(trees)
    codes: set[str] = set()
    for node in (n for tree in trees for n in ast.walk(tree)):
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.Assign):
                    targets, value = stmt.targets, stmt.value
                elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                    targets, value = [stmt.target], stmt.value
                else:
                    continue
                if any(isinstance(t, ast.Name) and t.id == "default_code" for t in targets):
                    codes |= _resolve(value, constants)
        elif isinstance(node, ast.Call) and _call_name(node) != "StageError":
            for keyword in node.keywords:
                if keyword.arg == "code":
                    codes |= _resolve(keyword.value, constants)
    return codes


def run_error_codes() -> set[str]:
    """Every `error.code` of a failed run: the first argument of each StageError, and
    the code of each `<run>.error = {"code": ...}` a transition sets itself."""
    trees = _trees("services")
    constants = _constants(trees)
    codes: set[str] = set()
    for node in (n for tree in trees for n in ast.walk(tree)):
        if isinstance(node, ast.Call) and _call_name(node) == "StageError" and node.args:
            codes |= _resolve(node.args[0], constants)
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Dict)
            and any(isinstance(t, ast.Attribute) and t.attr == "error" for t in node.targets)
        ):
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "code":
                    codes |= _resolve(value, constants)
    return codes


def test_the_scan_finds_what_it_must() -> None:
    """The scans themselves work: codes raised in several ways are all found."""
    assert {
        "RUN_NOT_CANCELABLE",  # code="..." in services/runs
        "PAID_PLAN_REQUIRED",  # code=CONSTANT in weftcore/plans.py
        "DEADLINE_EXCEEDED",  # default_code of a WeftError subclass
        "CORS_ORIGIN_NOT_ALLOWED",  # gateway
    } <= api_error_codes()
    assert {"TEMPLATE_ERROR", "TABLE_LIMIT_EXCEEDED", "INTERNAL", "TIMEOUT"} <= run_error_codes()


def test_error_code_enum_is_exactly_the_codes_the_code_base_raises() -> None:
    enum = set(COMPONENTS["schemas"]["ErrorCode"]["enum"])
    codes = api_error_codes()
    assert not codes - enum, f"add to ErrorCode in gateway/openapi.yaml: {sorted(codes - enum)}"
    assert not enum - codes, f"no longer raised anywhere: {sorted(enum - codes)}"
    assert COMPONENTS["schemas"]["ErrorBody"]["properties"]["code"] == {
        "$ref": "#/components/schemas/ErrorCode"
    }
    for code in enum:
        assert code in COMPONENTS["schemas"]["ErrorCode"]["description"], code


def test_run_error_code_enum_is_exactly_the_codes_stages_fail_with() -> None:
    enum = set(COMPONENTS["schemas"]["RunErrorCode"]["enum"])
    codes = run_error_codes()
    assert not codes - enum, f"add to RunErrorCode in gateway/openapi.yaml: {sorted(codes - enum)}"
    assert not enum - codes, f"no longer raised anywhere: {sorted(enum - codes)}"


# -- events and webhooks ------------------------------------------------------------------


def _event_constants() -> set[str]:
    return {v for k, v in vars(events).items() if k.isupper() and isinstance(v, str) and "." in v}


def test_run_event_types_and_variants_cover_every_event() -> None:
    types = _event_constants()
    assert set(COMPONENTS["schemas"]["RunEventType"]["enum"]) == types
    mapping = COMPONENTS["schemas"]["RunEvent"]["discriminator"]["mapping"]
    assert set(mapping) == types
    for event_type, ref in mapping.items():
        variant = _deref({"$ref": ref})
        assert variant["properties"]["type"]["const"] == event_type
    assert [b["$ref"] for b in COMPONENTS["schemas"]["RunEvent"]["oneOf"]] == list(mapping.values())


def test_webhooks_are_the_events_delivered_with_their_signature() -> None:
    assert set(DOC["webhooks"]) == set(events.WEBHOOK_EVENTS)
    for event_type, item in DOC["webhooks"].items():
        op = item["post"]
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert _deref(schema)["properties"]["type"]["const"] == event_type
        headers = {_deref(p)["name"] for p in op["parameters"]}
        assert headers == {
            webhooks.SIGNATURE_HEADER,
            webhooks.EVENT_HEADER,
            webhooks.DELIVERY_HEADER,
        }
    signature = _deref({"$ref": "#/components/parameters/WebhookSignature"})
    real = webhooks.sign("whsec_test", b'{"id":"evt_1"}', 1796671205)
    assert re.fullmatch(signature["schema"]["pattern"], real)


def test_a_real_webhook_body_matches_its_schema() -> None:
    run = _deref({"$ref": "#/components/examples/CompletedRun"})["value"]["data"]
    body = webhooks.event_body(
        "evt_1",
        {"type": "run.completed", "created_at": "2026-12-07T19:40:06.233Z", "run": run},
        "https://weft.example.com",
    )
    _validator({"$ref": "#/components/schemas/RunCompletedEvent"}).validate(json.loads(body))


def test_schemas_with_refs_brings_what_the_schemas_refer_to() -> None:
    shared = schemas_with_refs("RunEnvelope")
    assert {"RunEnvelope", "Run", "RunError", "RunErrorCode", "Field", "FieldOption"} <= set(shared)
    assert "Workflow" not in shared
    shared["Run"]["required"].clear()  # a copy: the document is untouched
    assert document("http://x")["components"]["schemas"]["Run"]["required"]
