"""GET /api/v1/workflows/:id/openapi.json: an OpenAPI 3.1 document for one workflow.

Pure: built from the workflow's current definition, so a generator (openapi-python-client,
openapi-generator...) makes a typed client for it. Every schema a generator would name is
a named component (`<Name>Params`, `Run`, `Error`...), every operation has a stable
`operationId`, arrays have `items`, and nullable objects are `$ref`s or `type: [.., null]`.
`Run`, `CreatedRun`, `Error` and what they refer to (`ErrorCode`...) are copied from the
main document (gateway/openapi.yaml), so both describe them alike.

The run's `result` is typed only where the definition says what it is: no `output`
template and a last stage that is an llm stage with `response_format: json` and a
`json_schema` (the worker validates the output against it). Otherwise it is any JSON value.
"""

import re
from dataclasses import dataclass
from typing import Any

from gateway.openapi_spec import schemas_with_refs

ATTACHMENT_ID_PATTERN = "^att_"
# Run options of the flat body, unless a declared field has the name (the field wins).
_FLAT_OPTIONS = ("input_text", "webhook_url", "attachment_ids")
_ERROR_STATUSES = {
    "400": "Invalid request: INVALID_JSON, INVALID_PARAM or MISSING_PARAM (with `param`).",
    "401": "Missing, malformed, unknown, revoked or expired key (UNAUTHENTICATED).",
    "402": "PAID_PLAN_REQUIRED or INSUFFICIENT_CREDITS.",
    "403": "MISSING_SCOPE or NO_ALLOCATION.",
    "404": "Not found, not the caller's, or outside the key's allowlist (NOT_FOUND).",
    "409": "IDEMPOTENCY_KEY_REUSED or IDEMPOTENCY_IN_FLIGHT.",
    "413": "Body or upload over its cap (PAYLOAD_TOO_LARGE).",
    "415": "Unsupported file type or content type (UNSUPPORTED_MEDIA_TYPE).",
    "429": "Rate limited (RATE_LIMITED); retry after Retry-After seconds.",
    "500": "A fault after work started (INTERNAL); retry with the same Idempotency-Key.",
    "503": "A dependency is unavailable (SERVICE_UNAVAILABLE); retry with backoff.",
}
_CREATE_ERRORS = ("400", "401", "402", "403", "404", "409", "413", "415", "429", "500", "503")
_GET_ERRORS = ("400", "401", "402", "403", "404", "429", "503")


@dataclass(frozen=True)
class WorkflowInfo:
    """What the document is made from (GetWorkflow's reply, parsed)."""

    id: str
    slug: str
    name: str
    description: str
    version: int
    fields: list[dict[str, Any]]  # as GET /workflows/:id shows them
    definition: dict[str, Any]  # the whole validated definition


def schema_name(workflow_name: str) -> str:
    """A component-name prefix from the workflow's name: "Contract review" -> "ContractReview"."""
    words = re.findall(r"[A-Za-z0-9]+", workflow_name)
    name = "".join(w[:1].upper() + w[1:] for w in words)
    if not name or name[0].isdigit():
        name = "Workflow" + name
    return name


def _select_type(options: list[Any]) -> str | None:
    kinds = {type(o) for o in options}
    if kinds == {str}:
        return "string"
    if kinds == {bool}:
        return "boolean"
    if kinds == {int}:
        return "integer"
    if kinds <= {int, float}:
        return "number"
    return None


def field_schema(field: dict[str, Any], *, binary_files: bool = False) -> dict[str, Any]:
    """The JSON Schema of one declared field's value, from its type and constraints.

    With `binary_files`, a `file` field is a file part (multipart); else an attachment id.
    """
    kind = field["type"]
    c = field.get("constraints") or {}
    schema: dict[str, Any]
    if kind == "text":
        schema = {"type": "string"}
        if "min_length" in c:
            schema["minLength"] = c["min_length"]
        if "max_length" in c:
            schema["maxLength"] = c["max_length"]
        if "pattern" in c:
            # The API matches the whole value (re.fullmatch); JSON Schema searches.
            schema["pattern"] = f"^(?:{c['pattern']})$"
    elif kind in ("number", "integer"):
        schema = {"type": kind}
        if "min" in c:
            schema["minimum"] = c["min"]
        if "max" in c:
            schema["maximum"] = c["max"]
    elif kind == "boolean":
        schema = {"type": "boolean"}
    elif kind == "select":
        options = list(c.get("options", []))
        schema = {"enum": options}
        select_type = _select_type(options)
        if select_type is not None:
            schema = {"type": select_type, **schema}
    elif kind == "file" and binary_files:
        schema = {
            "type": "string",
            "format": "binary",
            "contentMediaType": "application/octet-stream",
        }
    elif kind == "file":
        schema = {
            "type": "string",
            "pattern": ATTACHMENT_ID_PATTERN,
            "description": "An attachment id (att_...) from POST /api/v1/attachments.",
        }
    else:  # json: any JSON value
        schema = {}
    description = field.get("description") or ""
    if kind == "file":
        description = " ".join(filter(None, [description, file_limits(field)]))
    if description:
        schema["description"] = description
    default = field.get("default")
    if default is not None and kind != "file":
        schema["default"] = default
    return schema


def file_limits(field: dict[str, Any]) -> str:
    """What a file field accepts, in words ("" when anything goes)."""
    c = field.get("constraints") or {}
    parts = []
    if c.get("kinds"):
        parts.append("Kinds: " + ", ".join(c["kinds"]) + ".")
    if c.get("max_bytes"):
        parts.append(f"At most {c['max_bytes']:,} bytes.")
    return " ".join(parts)


def _object(properties: dict[str, Any], required: list[str], description: str) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "properties": properties,
    }
    if required:
        schema["required"] = required
    return schema


def _required(fields: list[dict[str, Any]]) -> list[str]:
    return [f["name"] for f in fields if f.get("required")]


def params_schema(fields: list[dict[str, Any]]) -> dict[str, Any]:
    """`params` of POST /workflows/:id/runs: every declared field, typed."""
    return _object(
        {f["name"]: field_schema(f) for f in fields},
        _required(fields),
        "Values for the workflow's declared fields.",
    )


def _options(declared: set[str], *, binary_files: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        "input_text": {
            "type": "string",
            "maxLength": 50000,
            "description": "The prompt/instruction (empty when absent).",
        },
        "webhook_url": {
            "type": "string",
            "maxLength": 2048,
            "description": "https URL that receives signed run events.",
        },
        "attachment_ids": {
            "type": "array",
            "items": {"type": "string", "pattern": ATTACHMENT_ID_PATTERN},
            "description": "Ids from POST /api/v1/attachments, owned by the caller.",
        },
    }
    if binary_files:  # multipart: files arrive as parts, not ids
        del options["attachment_ids"]
    return {k: v for k, v in options.items() if k not in declared}


def endpoint_schema(fields: list[dict[str, Any]], *, binary_files: bool = False) -> dict[str, Any]:
    """The flat body of the published endpoint: the fields at the top level, plus options."""
    declared = {f["name"] for f in fields}
    properties = {
        **_options(declared, binary_files=binary_files),
        **{f["name"]: field_schema(f, binary_files=binary_files) for f in fields},
    }
    schema = _object(
        properties, _required(fields), "The declared fields at the top level, plus run options."
    )
    if binary_files:
        schema["description"] += " Other file parts become attachments."
        schema["additionalProperties"] = {"type": "string", "format": "binary"}
    return schema


def _rebase_refs(node: Any, refs: dict[str, str], root: str) -> Any:
    """An embedded schema's local `$ref`s pointed at where their targets now live."""
    if isinstance(node, dict):
        out = {k: _rebase_refs(v, refs, root) for k, v in node.items() if k not in _HOISTED}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            out["$ref"] = refs.get(ref, root + ref.removeprefix("#"))
        return out
    if isinstance(node, list):
        return [_rebase_refs(v, refs, root) for v in node]
    return node


_HOISTED = ("$schema", "$id", "$defs", "definitions")


def result_components(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """`<name>` and its `$defs` as named components (generators resolve no nested refs)."""
    refs: dict[str, str] = {}
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        for def_name, sub in (schema.get(key) or {}).items():
            component = name + schema_name(def_name).removeprefix("Workflow")
            refs[f"#/{key}/{def_name}"] = f"#/components/schemas/{component}"
            defs[component] = sub
    root = f"#/components/schemas/{name}"
    out = {name: _rebase_refs(schema, refs, root)}
    for component, sub in defs.items():
        out[component] = _rebase_refs(sub, refs, root)
    return out


def declared_result(definition: dict[str, Any]) -> dict[str, Any] | None:
    """The result's JSON Schema when the definition declares one, else None (any value)."""
    if isinstance(definition.get("output_schema"), dict):
        return dict(definition["output_schema"])
    if definition.get("output"):
        return None  # a rendered template: any JSON value, or text
    stages = definition.get("stages") or []
    last = stages[-1] if stages else {}
    if last.get("type") == "llm" and last.get("response_format") == "json":
        schema = last.get("json_schema")
        if isinstance(schema, dict):
            return schema
    return None


def _nullable(ref: str) -> dict[str, Any]:
    return {"anyOf": [{"$ref": f"#/components/schemas/{ref}"}, {"type": "null"}]}


def _run_components(result_ref: str | None) -> dict[str, Any]:
    """Run, CreatedRun, Error and what they refer to, as the main document has them; with
    `result_ref`, the run's `result` typed by the workflow's declared result."""
    schemas = schemas_with_refs("RunEnvelope", "CreatedRunEnvelope", "Error")
    if result_ref:
        schemas["Run"]["properties"]["result"] = {
            **_nullable(result_ref),
            "description": "The workflow's output once completed, else null.",
        }
    return schemas


def _json_body(ref: str) -> dict[str, Any]:
    return {"schema": {"$ref": f"#/components/schemas/{ref}"}}


def _responses(ok: str, errors: tuple[str, ...]) -> dict[str, Any]:
    response = "CreatedRun" if ok == "201" else "Run"
    out: dict[str, Any] = {ok: {"$ref": f"#/components/responses/{response}"}}
    for status in errors:
        out[status] = {
            "description": _ERROR_STATUSES[status],
            "content": {"application/json": _json_body("Error")},
        }
    return out


def _name_selects(
    schemas: dict[str, Any], bodies: tuple[str, ...], name: str, fields: list[dict[str, Any]]
) -> None:
    """Each select field's enum as one named component (`<Name><Field>`), shared by the
    request bodies, so generators make one enum per field and need not invent its name."""
    for field in fields:
        if field["type"] != "select":
            continue
        component = name + schema_name(field["name"]).removeprefix("Workflow")
        while component in schemas:  # e.g. a field called "params"
            component += "Option"
        full = field_schema(field)
        schemas[component] = {k: v for k, v in full.items() if k in ("type", "enum")}
        rest = {k: v for k, v in full.items() if k not in ("type", "enum")}
        for body in bodies:
            properties = schemas.get(body, {}).get("properties", {})
            if field["name"] in properties:
                properties[field["name"]] = {"$ref": f"#/components/schemas/{component}", **rest}


def workflow_document(base_url: str, workflow: WorkflowInfo) -> dict[str, Any]:
    """The OpenAPI 3.1 document of one workflow, served from `base_url`."""
    name = schema_name(workflow.name)
    params, create, endpoint, form = (
        f"{name}Params",
        f"{name}CreateRunRequest",
        f"{name}EndpointRequest",
        f"{name}EndpointForm",
    )
    fields = workflow.fields
    result = declared_result(workflow.definition)
    schemas: dict[str, Any] = {
        params: params_schema(fields),
        create: _object(
            {
                "input_text": {"type": "string", "maxLength": 50000},
                "params": {"$ref": f"#/components/schemas/{params}"},
                **_options({"input_text"}, binary_files=False),
            },
            ["input_text", *(["params"] if _required(fields) else [])],
            f"Creates a run of {workflow.name}.",
        ),
        endpoint: endpoint_schema(fields),
        **_run_components(f"{name}Result" if result is not None else None),
    }
    if result is not None:
        schemas.update(result_components(f"{name}Result", result))
    endpoint_content: dict[str, Any] = {"application/json": _json_body(endpoint)}
    if any(f["type"] == "file" for f in fields):
        schemas[form] = endpoint_schema(fields, binary_files=True)
        endpoint_content["multipart/form-data"] = _json_body(form)
    _name_selects(schemas, (params, endpoint, form), name, fields)
    idempotency = {"$ref": "#/components/parameters/IdempotencyKey"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{workflow.name} (Weft workflow)",
            "version": str(workflow.version),
            "description": workflow.description or f"Runs the Weft workflow {workflow.id}.",
        },
        "servers": [{"url": base_url.rstrip("/")}],
        "security": [{"bearer": []}],
        "paths": {
            f"/api/v1/workflows/{workflow.id}/runs": {
                "post": {
                    "operationId": "createRun",
                    "summary": f"Starts a run of {workflow.name} and returns at once.",
                    "parameters": [idempotency],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": _json_body(create)},
                    },
                    "responses": _responses("201", _CREATE_ERRORS),
                }
            },
            f"/api/v1/endpoints/{workflow.slug}": {
                "post": {
                    "operationId": "callEndpoint",
                    "summary": f"The published endpoint of {workflow.name}: a flat body.",
                    "parameters": [idempotency],
                    "requestBody": {"required": True, "content": endpoint_content},
                    "responses": _responses("201", _CREATE_ERRORS),
                }
            },
            "/api/v1/workflow-runs/{run_id}": {
                "get": {
                    "operationId": "getRun",
                    "summary": "A run; with wait=N, held open until its status changes.",
                    "parameters": [
                        {
                            "name": "run_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "wait",
                            "in": "query",
                            "required": False,
                            "description": "Seconds (0-60) to hold the request open.",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 60},
                        },
                    ],
                    "responses": _responses("200", _GET_ERRORS),
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "wft_live_<secret>"}
            },
            "parameters": {
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "1-256 printable characters; a retry replays the answer.",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
                }
            },
            "responses": {
                "Run": {
                    "description": "The run.",
                    "content": {"application/json": _json_body("RunEnvelope")},
                },
                "CreatedRun": {
                    "description": "The run was accepted (or the stored answer replayed).",
                    "content": {"application/json": _json_body("CreatedRunEnvelope")},
                },
            },
            "schemas": schemas,
        },
    }
