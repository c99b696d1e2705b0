"""What every snippet is generated from: the call to make, with typed placeholders."""

import json
from dataclasses import dataclass
from typing import Any

LANGUAGES = ("curl", "node", "python", "php", "go")
VARIANTS = ("json", "multipart")
INPUT_PLACEHOLDER = "Your instruction or text for the workflow."
TERMINAL = ("completed", "failed", "canceled")


@dataclass(frozen=True)
class FileField:
    name: str
    path: str  # a local path placeholder, e.g. ./contract.pdf


@dataclass(frozen=True)
class CallSpec:
    """One run creation: where to send it and what (values already typed).

    `keyless`: a call of the workflow's public endpoint without an API key: a flat body
    at /api/v1/endpoints/<slug>, files only as multipart parts (a stranger may not name
    attachment ids), the run read at its `links.self` with the answer's run token."""

    base_url: str
    workflow_id: str
    slug: str
    input_text: str
    params: dict[str, Any]  # non-file fields -> typed JSON value
    form: dict[str, str]  # the same values as multipart form strings
    files: tuple[FileField, ...]
    variant: str
    keyless: bool = False

    @property
    def create_path(self) -> str:
        """Where the run is created (below the base URL)."""
        if self.keyless:
            return f"/api/v1/endpoints/{self.slug}"
        return f"/api/v1/workflows/{self.workflow_id}/runs"

    def json_body(self, params: dict[str, Any]) -> dict[str, Any]:
        """The JSON body for these params: the endpoint's is flat, fields at the top."""
        if self.keyless:
            return {"input_text": self.input_text, **params}
        return {"input_text": self.input_text, "params": params}


def _number_in_range(field: dict[str, Any], fallback: float) -> float:
    c = field.get("constraints") or {}
    value = fallback
    if "min" in c:
        value = max(value, c["min"])
    if "max" in c:
        value = min(value, c["max"])
    return value


def placeholder(field: dict[str, Any]) -> Any:
    """A value of the field's type that passes its constraints (its default if it has one)."""
    kind = field["type"]
    default = field.get("default")
    if default is not None and kind != "file":
        return default
    c = field.get("constraints") or {}
    if kind == "select":
        return c["options"][0]
    if kind == "integer":
        return int(_number_in_range(field, 1))
    if kind == "number":
        return _number_in_range(field, 1.5)
    if kind == "boolean":
        return True
    if kind == "json":
        return {"example": "value"}
    text = f"example {field['name']}"
    if "max_length" in c:
        text = text[: c["max_length"]]
    if "min_length" in c and len(text) < c["min_length"]:
        text = text.ljust(c["min_length"], "x")
    return text


def form_value(value: Any) -> str:
    """A typed value as a multipart form field (the API coerces it to the declared type)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# The placeholder file's extension for each kind a file field may accept.
_SUFFIXES = {"image": "png"}


def file_suffix(field: dict[str, Any]) -> str:
    """An extension the field accepts (its first declared kind; pdf when any goes)."""
    kinds = (field.get("constraints") or {}).get("kinds") or ["pdf"]
    return _SUFFIXES.get(kinds[0], kinds[0])


def call_spec(
    base_url: str,
    workflow_id: str,
    fields: list[dict[str, Any]],
    variant: str,
    *,
    slug: str = "",
    keyless: bool = False,
) -> CallSpec:
    """The CallSpec for a workflow's declared fields (`slug`: its endpoint's, which a
    keyless call needs)."""
    if keyless and not slug:
        raise ValueError("a keyless call needs the endpoint's slug")
    if keyless and variant == "json" and any(f["type"] == "file" for f in fields):
        raise ValueError("a keyless call sends files as multipart parts, not ids")
    params: dict[str, Any] = {}
    form: dict[str, str] = {}
    files: list[FileField] = []
    for field in fields:
        if field["type"] == "file":
            files.append(FileField(field["name"], f"./{field['name']}.{file_suffix(field)}"))
            continue
        value = placeholder(field)
        params[field["name"]] = value
        form[field["name"]] = form_value(value)
    return CallSpec(
        base_url=base_url.rstrip("/"),
        workflow_id=workflow_id,
        slug=slug,
        input_text=INPUT_PLACEHOLDER,
        params=params,
        form=form,
        files=tuple(files),
        variant=variant,
        keyless=keyless,
    )
