"""The OpenAPI 3.1 document of the public API, from gateway/openapi.yaml (one source).

The YAML is read once per process; `document(base_url)` adds the server URL so tools
(schemathesis, code generators) call the gateway that served it.
"""

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

SPEC_PATH = Path(__file__).with_name("openapi.yaml")
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "options", "head", "trace"})


@functools.cache
def _loaded() -> dict[str, Any]:
    doc = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3.1"):
        raise ValueError(f"{SPEC_PATH} is not an OpenAPI 3.1 document")
    return doc


def document(base_url: str) -> dict[str, Any]:
    """The document with `servers` pointing at `base_url`."""
    doc = copy.deepcopy(_loaded())
    doc["servers"] = [{"url": base_url.rstrip("/")}]
    return doc


def operations(doc: dict[str, Any] | None = None) -> set[tuple[str, str]]:
    """(METHOD, path) of every documented operation, e.g. ("GET", "/api/v1/me")."""
    paths: dict[str, Any] = (doc or _loaded())["paths"]
    return {
        (method.upper(), path)
        for path, item in paths.items()
        for method in item
        if method in HTTP_METHODS
    }


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {n for v in node.values() for n in _refs(v)}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        return found
    if isinstance(node, list):
        return {n for v in node for n in _refs(v)}
    return set()


def schemas_with_refs(*names: str) -> dict[str, Any]:
    """Copies of the named component schemas and of every schema they refer to, so other
    documents (a workflow's own) share these definitions instead of restating them."""
    every = _loaded()["components"]["schemas"]
    out: dict[str, Any] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in out:
            out[name] = copy.deepcopy(every[name])
            todo += sorted(_refs(out[name]) - set(out))
    return out
