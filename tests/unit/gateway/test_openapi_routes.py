"""The OpenAPI document against the gateway's real routes, both ways, and its own shape."""

import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from gateway.app import init_app
from gateway.config import GatewayConfig
from gateway.openapi_spec import document, operations
from tests.support.json_tree import every_node


def _config() -> GatewayConfig:
    return GatewayConfig.from_env(
        {"WEFT_DATABASE_URL": "postgresql://unused/none", "WEFT_HTTP_PORT": "9"}
    )


# Not REST: the Model Context Protocol (JSON-RPC, gateway/mcp), which the document's
# description names instead of describing.
NOT_REST = {("POST", "/mcp")}


def _routed() -> set[tuple[str, str]]:
    app = init_app(_config())
    found: set[tuple[str, str]] = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method == "HEAD" or not path:  # aiohttp adds HEAD for every GET
            continue
        if path.startswith("/app"):  # the console: pages for people (docs/console.md)
            continue
        found.add((route.method, path))
    return found - NOT_REST


def test_the_mcp_route_is_served_and_named_in_the_description() -> None:
    app = init_app(_config())
    paths = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    assert NOT_REST <= paths
    assert "POST /mcp" in document("http://x")["info"]["description"]


def test_every_route_is_documented() -> None:
    undocumented = _routed() - operations()
    assert not undocumented, f"routes missing from gateway/openapi.yaml: {sorted(undocumented)}"


def test_every_documented_operation_is_routed() -> None:
    missing = operations() - _routed()
    assert not missing, f"documented but not routed: {sorted(missing)}"


def test_the_document_is_openapi_31_with_bearer_security() -> None:
    doc = document("http://example.test/")
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"] == [{"url": "http://example.test"}]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        **doc["components"]["securitySchemes"]["bearer"],
        "type": "http",
        "scheme": "bearer",
    }
    assert doc["security"] == [{"bearer": []}]
    public = {p for p, item in doc["paths"].items() if item.get("get", {}).get("security") == []}
    assert public == {"/api/v1/openapi.json", "/healthz", "/readyz", "/metrics"}


def test_every_ref_resolves_and_every_schema_is_valid_json_schema() -> None:
    doc = document("http://x")
    for node in every_node(doc):
        if isinstance(node, dict) and "$ref" in node:
            target: Any = doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            assert target is not None
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)  # raises naming the bad keyword
        assert name


def test_path_parameters_are_declared() -> None:
    doc = document("http://x")
    for path, item in doc["paths"].items():
        for method, op in item.items():
            declared = set()
            for p in op.get("parameters", []):
                if "$ref" in p:
                    p = doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
                if p["in"] == "path":
                    declared.add(p["name"])
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/workflows/{workflow_id}/runs", "/api/v1/attachments", "/api/v1/endpoints/{slug}"],
)
def test_creating_posts_take_an_idempotency_key(path: str) -> None:
    op = document("http://x")["paths"][path]["post"]
    refs = [p.get("$ref", "") for p in op["parameters"]]
    assert "#/components/parameters/IdempotencyKey" in refs


def test_error_envelope_and_headers() -> None:
    doc = document("http://x")
    comps = doc["components"]
    assert comps["schemas"]["ErrorBody"]["required"] == ["code", "message", "request_id"]
    created = comps["responses"]["RunCreated"]["headers"]
    assert {"X-Request-Id", "Idempotent-Replayed", "RateLimit-Limit"} <= set(created)
    assert "Retry-After" in comps["responses"]["RateLimited"]["headers"]
    schemas = Draft202012Validator({"$ref": "#/components/schemas/Error", "components": comps})
    good = {"error": {"code": "NOT_FOUND", "message": "No.", "request_id": "req_1"}}
    assert schemas.is_valid(good)
    assert not schemas.is_valid({"error": {"code": "not_found", "message": "x", "request_id": "r"}})
    assert not schemas.is_valid({"error": {"code": "X", "message": "x"}})
