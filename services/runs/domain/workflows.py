"""Workflow definitions: parse YAML/JSON, validate against the published JSON schema and
the rules a schema cannot say (unique ids, valid templates and patterns), normalise.

Every error names the path of the bad field (`stages[1].model`), as `param`.
"""

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import SandboxedEnvironment
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from services.runs.domain.endpoint import settle_slug
from services.runs.domain.params import validate_value
from weftcore.errors import InvalidArgument

SCHEMA_PATH = Path(__file__).parents[1] / "schema" / "workflow.schema.json"
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Keys whose values are Jinja2 templates, per stage type (checked for syntax at apply).
_TEMPLATE_KEYS = {
    "llm": ("prompt", "system"),
    "template": ("template",),
    "http": ("url", "body"),
    "human_review": ("prompt", "context"),
    # The SQL is not a template: values reach it as tables, never spliced into it.
    "table": (),
}


@functools.cache
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@functools.cache
def _jinja() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


def json_path(parts: Any) -> str:
    """`stages[1].model` from a jsonschema path deque."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_text(text: str) -> Any:
    """YAML or JSON text (JSON is YAML) as a document; 400 on a syntax error."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(
            f"Workflow definition is not valid YAML/JSON: {exc}", param="definition"
        ) from None
    # YAML dates and the like become strings: definitions are stored as JSON.
    return json.loads(json.dumps(doc, default=str))


def stable_id(slug: str) -> str:
    """The id a workflow without an explicit one gets: derived from its slug, stable."""
    value = int.from_bytes(hashlib.sha256(slug.encode()).digest()[:16], "big")
    chars = []
    for _ in range(24):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "wf_" + "".join(chars)


def _best_error(errors: list[ValidationError]) -> ValidationError:
    # The deepest error is the most specific (e.g. inside the stage, not "allOf failed").
    def depth(e: ValidationError) -> tuple[int, int]:
        return (len(e.absolute_path), 0 if e.validator in ("if", "allOf") else 1)

    return max(errors, key=depth)


def _schema_check(doc: Any) -> None:
    errors = list(_validator().iter_errors(doc))
    if not errors:
        return
    err = _best_error(errors)
    while err.context:  # descend into oneOf/anyOf/allOf causes
        err = _best_error(list(err.context))
    parts = list(err.absolute_path)
    # Name the missing or unexpected key itself, not the object holding it.
    if err.validator == "required" and isinstance(err.instance, dict):
        required = err.validator_value if isinstance(err.validator_value, list) else []
        missing = [k for k in required if k not in err.instance]
        parts += missing[:1]
    elif err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
        extra = [k for k in err.instance if k not in allowed]
        parts += extra[:1]
    path = json_path(parts) or "definition"
    raise InvalidArgument(f"Invalid workflow definition at {path}: {err.message}", param=path)


def _check_template(source: str | None, path: str) -> None:
    if source is None:
        return
    try:
        _jinja().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidArgument(
            f"Invalid template at {path} (line {exc.lineno}): {exc.message}", param=path
        ) from None


def _check_fields(fields: list[dict[str, Any]], path: str) -> None:
    seen: set[str] = set()
    for i, field in enumerate(fields):
        at = f"{path}[{i}]"
        if field["name"] in seen:
            raise InvalidArgument(
                f"Duplicate field name {field['name']!r} at {at}.name.", param=f"{at}.name"
            )
        seen.add(field["name"])
        constraints = field.get("constraints", {})
        if "pattern" in constraints:
            try:
                re.compile(constraints["pattern"])
            except re.error as exc:
                p = f"{at}.constraints.pattern"
                msg = f"Invalid regular expression at {p}: {exc}"
                raise InvalidArgument(msg, param=p) from None
        if "default" in field and field["default"] is not None and field["type"] != "file":
            validate_value(field, field["default"], f"{at}.default")


def _check_table_sources(stage: dict[str, Any], fields: list[dict[str, Any]], at: str) -> None:
    """A table stage's `params.<name>` sources must be declared text or file fields."""
    kinds = {f["name"]: f["type"] for f in fields}
    for name, sources in (stage.get("tables") or {}).items():
        for source in [sources] if isinstance(sources, str) else sources:
            field = source.removeprefix("params.")
            if source != "attachment" and kinds.get(field) not in ("text", "file"):
                p = f"{at}.tables.{name}"
                msg = f"Invalid table source at {p}: {source!r} is not a text or file field."
                raise InvalidArgument(msg, param=p)


def _check_json_schema(schema: Any, path: str) -> None:
    try:
        Draft202012Validator.check_schema(schema)
    except Exception as exc:  # SchemaError, or whatever odd input makes it raise
        msg = exc.message if isinstance(exc, SchemaError) else str(exc)
        raise InvalidArgument(f"Invalid JSON schema at {path}: {msg}", param=path) from None


def validate_definition(doc: Any) -> dict[str, Any]:
    """The normalised definition (id filled in, defaults set), or InvalidArgument."""
    _schema_check(doc)
    definition: dict[str, Any] = dict(doc)
    settle_slug(definition)
    definition.setdefault("id", stable_id(definition["slug"]))
    definition.setdefault("description", "")
    definition.setdefault("fields", [])
    _check_fields(definition["fields"], "fields")
    stage_ids: set[str] = set()
    for i, stage in enumerate(definition["stages"]):
        at = f"stages[{i}]"
        if stage["id"] in stage_ids:
            raise InvalidArgument(
                f"Duplicate stage id {stage['id']!r} at {at}.id.", param=f"{at}.id"
            )
        stage_ids.add(stage["id"])
        for key in _TEMPLATE_KEYS[stage["type"]]:
            _check_template(stage.get(key), f"{at}.{key}")
        for name, value in (stage.get("headers") or {}).items():
            _check_template(value, f"{at}.headers.{name}")
        if stage["type"] == "human_review":
            _check_fields(stage["fields"], f"{at}.fields")
        if stage["type"] == "table":
            _check_table_sources(stage, definition["fields"], at)
        if stage["type"] == "llm" and "json_schema" in stage:
            _check_json_schema(stage["json_schema"], f"{at}.json_schema")
    _check_template(definition.get("output"), "output")
    if "output_schema" in definition:
        _check_json_schema(definition["output_schema"], "output_schema")
    return definition


def load_definition(text: str) -> dict[str, Any]:
    """Parse and validate definition text (YAML or JSON)."""
    return validate_definition(parse_text(text))


def public_fields(definition: dict[str, Any]) -> list[dict[str, Any]]:
    """`fields` as GET /workflows/:id shows them (every key present)."""
    return [
        {
            "name": f["name"],
            "type": f["type"],
            "required": bool(f.get("required", False)),
            "description": f.get("description", ""),
            "default": f.get("default"),
            "constraints": f.get("constraints", {}),
        }
        for f in definition.get("fields", [])
    ]


def public_stages(definition: dict[str, Any]) -> list[dict[str, Any]]:
    """The stage list as GET /workflows/:id shows it: id, type, model (LLM stages)."""
    out = []
    for stage in definition["stages"]:
        item = {"id": stage["id"], "type": stage["type"]}
        if stage["type"] == "llm":
            item["model"] = stage["model"]
        out.append(item)
    return out
