"""gateway/workflow_openapi.py: field types to JSON Schema, and the document's shape."""

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from gateway.openapi_spec import document
from gateway.workflow_openapi import (
    WorkflowInfo,
    declared_result,
    endpoint_schema,
    field_schema,
    params_schema,
    schema_name,
    workflow_document,
)
from services.runs.domain.workflows import public_fields, validate_definition
from tests.support.json_tree import every_node

FIELDS: list[dict[str, Any]] = [
    {"name": "count", "type": "integer", "required": True, "constraints": {"min": 1, "max": 9}},
    {"name": "ratio", "type": "number", "default": 0.5, "constraints": {"min": 0}},
    {"name": "title", "type": "text", "description": "A title.", "constraints": {"max_length": 5}},
    {"name": "flag", "type": "boolean"},
    {"name": "meta", "type": "json"},
    {"name": "tone", "type": "select", "constraints": {"options": ["formal", "casual"]}},
    {"name": "doc", "type": "file"},
]


def _info(fields: list[dict[str, Any]], stages: list[dict[str, Any]] | None = None) -> WorkflowInfo:
    definition = validate_definition(
        {
            "slug": "contract-review",
            "name": "Contract review",
            "fields": fields,
            "stages": stages or [{"id": "t", "type": "template", "template": "x"}],
        }
    )
    return WorkflowInfo(
        id=definition["id"],
        slug="contract-review",
        name="Contract review",
        description="",
        version=3,
        fields=public_fields(definition),
        definition=definition,
    )


def _check(schema: dict[str, Any], value: Any) -> bool:
    return Draft202012Validator(schema).is_valid(value)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        (
            {"name": "n", "type": "integer", "constraints": {"min": 1, "max": 9}},
            {"type": "integer", "minimum": 1, "maximum": 9},
        ),
        ({"name": "n", "type": "number", "default": 1.5}, {"type": "number", "default": 1.5}),
        (
            {"name": "t", "type": "text", "constraints": {"min_length": 2, "max_length": 4}},
            {"type": "string", "minLength": 2, "maxLength": 4},
        ),
        (
            {"name": "b", "type": "boolean", "description": "On?"},
            {"type": "boolean", "description": "On?"},
        ),
        ({"name": "j", "type": "json"}, {}),
        (
            {"name": "s", "type": "select", "constraints": {"options": ["a", "b"]}},
            {"type": "string", "enum": ["a", "b"]},
        ),
        (
            {"name": "s", "type": "select", "constraints": {"options": [1, 2.5]}},
            {"type": "number", "enum": [1, 2.5]},
        ),
        (
            {"name": "s", "type": "select", "constraints": {"options": ["a", 1, True]}},
            {"enum": ["a", 1, True]},
        ),
    ],
)
def test_field_schema_per_type(field: dict[str, Any], expected: dict[str, Any]) -> None:
    assert field_schema(field) == expected


def test_file_fields_are_attachment_ids_or_binary_parts() -> None:
    field = {"name": "doc", "type": "file", "default": "att_x"}
    schema = field_schema(field)
    assert schema["type"] == "string" and schema["pattern"] == "^att_"
    assert "default" not in schema
    assert _check(schema, "att_123") and not _check(schema, "run_1")
    assert field_schema(field, binary_files=True)["format"] == "binary"


def test_text_pattern_matches_the_whole_value_like_the_api() -> None:
    schema = field_schema({"name": "c", "type": "text", "constraints": {"pattern": "[a-z]+"}})
    assert _check(schema, "abc") and not _check(schema, "abc1")


def test_select_enum_keeps_true_and_1_apart() -> None:
    schema = field_schema({"name": "s", "type": "select", "constraints": {"options": [1, 2]}})
    assert _check(schema, 1) and not _check(schema, True) and not _check(schema, 3)


def test_params_schema_types_and_requires() -> None:
    schema = params_schema(FIELDS)
    assert schema["required"] == ["count"]
    assert schema["additionalProperties"] is False
    assert _check(schema, {"count": 3, "ratio": 0.1, "tone": "formal", "meta": [1], "doc": "att_1"})
    assert not _check(schema, {"count": "3"})
    assert not _check(schema, {"count": 10})
    assert not _check(schema, {"ratio": 1})  # count missing
    assert not _check(schema, {"count": 1, "title": "too long"})
    assert not _check(schema, {"count": 1, "unknown": 1})
    assert "required" not in params_schema([{"name": "x", "type": "text"}])


def test_endpoint_schema_is_flat_and_a_field_wins_over_an_option() -> None:
    schema = endpoint_schema(FIELDS)
    assert {"input_text", "webhook_url", "attachment_ids", "count", "doc"} <= set(
        schema["properties"]
    )
    assert schema["properties"]["attachment_ids"]["items"]["type"] == "string"
    assert _check(schema, {"count": 2, "input_text": "hi", "attachment_ids": ["att_1"]})
    assert not _check(schema, {"input_text": "hi"})
    shadow = endpoint_schema([{"name": "webhook_url", "type": "integer"}])
    assert shadow["properties"]["webhook_url"] == {"type": "integer"}
    form = endpoint_schema(FIELDS, binary_files=True)
    assert form["properties"]["doc"]["format"] == "binary"
    assert "attachment_ids" not in form["properties"]


def test_schema_names() -> None:
    assert schema_name("Contract review") == "ContractReview"
    assert schema_name("test w-ab12") == "TestWAb12"
    assert schema_name("2024 report") == "Workflow2024Report"
    assert schema_name("   ") == "Workflow"


def test_document_shape() -> None:
    info = _info(FIELDS)
    doc = workflow_document("http://gw.test/", info)
    assert doc["openapi"] == "3.1.0"
    assert doc["servers"] == [{"url": "http://gw.test"}]
    assert doc["security"] == [{"bearer": []}]
    ops = {
        op["operationId"]: (method, path)
        for path, item in doc["paths"].items()
        for method, op in item.items()
    }
    assert ops == {
        "createRun": ("post", f"/api/v1/workflows/{info.id}/runs"),
        "callEndpoint": ("post", "/api/v1/endpoints/contract-review"),
        "getRun": ("get", "/api/v1/workflow-runs/{run_id}"),
    }
    schemas = doc["components"]["schemas"]
    assert {"ContractReviewParams", "Run", "Error", "ContractReviewEndpointForm"} <= set(schemas)
    endpoint = doc["paths"]["/api/v1/endpoints/contract-review"]["post"]
    assert set(endpoint["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    for node in every_node(doc):
        if isinstance(node, dict):
            if node.get("type") == "array":
                assert "items" in node, node
            if "$ref" in node:  # every ref resolves
                target: Any = doc
                for part in node["$ref"].removeprefix("#/").split("/"):
                    target = target[part]
            for key in ("oneOf", "anyOf"):  # nullable objects are refs, not inline objects
                for branch in node.get(key, []):
                    assert "$ref" in branch or branch == {"type": "null"}, node
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)


def test_no_file_field_no_multipart_and_params_optional() -> None:
    doc = workflow_document("http://x", _info([{"name": "x", "type": "text"}]))
    endpoint = doc["paths"]["/api/v1/endpoints/contract-review"]["post"]
    assert set(endpoint["requestBody"]["content"]) == {"application/json"}
    create = doc["components"]["schemas"]["ContractReviewCreateRunRequest"]
    assert create["required"] == ["input_text"]


def test_create_request_validates_with_component_refs() -> None:
    doc = workflow_document("http://x", _info(FIELDS))
    validator = Draft202012Validator(
        {"$ref": "#/components/schemas/ContractReviewCreateRunRequest", **doc}
    )
    assert validator.is_valid({"input_text": "go", "params": {"count": 2}})
    assert not validator.is_valid({"input_text": "go", "params": {"count": 2.5}})
    assert not validator.is_valid({"input_text": "go"})  # params has a required field


def test_run_schema_matches_the_main_document() -> None:
    run = workflow_document("http://x", _info(FIELDS))["components"]["schemas"]["Run"]
    main = document("http://x")["components"]["schemas"]["Run"]
    assert set(run["properties"]) == set(main["properties"])
    assert run["required"] == main["required"]


LLM_JSON = {
    "id": "extract",
    "type": "llm",
    "model": "local:m",
    "prompt": "p",
    "response_format": "json",
    "json_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/item"}}},
        "$defs": {"item": {"type": "string"}},
    },
}


def test_result_is_the_last_llm_stage_json_schema() -> None:
    info = _info([], [{"id": "t", "type": "template", "template": "x"}, LLM_JSON])
    assert declared_result(info.definition) == LLM_JSON["json_schema"]
    doc = workflow_document("http://x", info)
    result = doc["components"]["schemas"]["ContractReviewResult"]
    assert "$schema" not in result and "$defs" not in result
    assert doc["components"]["schemas"]["ContractReviewResultItem"] == {"type": "string"}
    assert result["properties"]["items"]["items"] == {
        "$ref": "#/components/schemas/ContractReviewResultItem"
    }
    run = Draft202012Validator({"$ref": "#/components/schemas/Run", **doc})
    base: dict[str, Any] = {
        "id": "run_1",
        "workflow_id": "wf_1",
        "version": 1,
        "rerun_of": None,
        "timeout_seconds": 300,
        "priority": 5,
        "queue_position": None,
        "status": "completed",
        "error": None,
        "cost_cents": 0,
        "cost_breakdown": [],
        "human_input_request": None,
        "created_at": "t",
        "started_at": "t",
        "completed_at": "t",
    }
    links = {"links": {"self": "s", "app": "a"}}
    assert run.is_valid({**base, **links, "result": {"items": ["a"]}})
    assert run.is_valid({**base, **links, "result": None})
    assert not run.is_valid({**base, **links, "result": {"items": [1]}})


@pytest.mark.parametrize(
    "extra",
    [
        {"output": "{{ stages.extract }}"},  # an output template: any value
        {"stages": [LLM_JSON, {"id": "t", "type": "template", "template": "x"}]},
        {"stages": [{**LLM_JSON, "response_format": "text"}]},
    ],
)
def test_result_is_any_value_otherwise(extra: dict[str, Any]) -> None:
    definition = {"stages": [LLM_JSON], **extra}
    assert declared_result(definition) is None


def test_select_enums_are_named_components_shared_by_the_bodies() -> None:
    fields: list[dict[str, Any]] = [
        {"name": "tone", "type": "select", "default": "a", "constraints": {"options": ["a", "b"]}},
        {"name": "params", "type": "select", "constraints": {"options": [1, 2]}},
        {"name": "doc", "type": "file"},
    ]
    schemas = workflow_document("http://x", _info(fields))["components"]["schemas"]
    assert schemas["ContractReviewTone"] == {"type": "string", "enum": ["a", "b"]}
    assert schemas["ContractReviewParamsOption"] == {"type": "integer", "enum": [1, 2]}
    ref = {"$ref": "#/components/schemas/ContractReviewTone", "default": "a"}
    for body in ("Params", "EndpointRequest", "EndpointForm"):
        assert schemas[f"ContractReview{body}"]["properties"]["tone"] == ref


def test_a_declared_output_schema_types_the_result() -> None:
    schema = {"type": "object", "properties": {"total": {"type": "number"}}}
    definition = {
        "output": "{{ stages.t }}",  # a template, yet the schema says what it yields
        "output_schema": schema,
        "stages": [{"id": "t", "type": "template", "template": "x"}],
    }
    assert declared_result(definition) == schema
    assert declared_result({**definition, "output_schema": None}) is None


def test_a_file_field_says_what_it_accepts() -> None:
    field = {
        "name": "sheet",
        "type": "file",
        "description": "The export.",
        "constraints": {"kinds": ["csv", "xlsx"], "max_bytes": 1_000_000},
    }
    described = field_schema(field)["description"]
    assert described == "The export. Kinds: csv, xlsx. At most 1,000,000 bytes."
