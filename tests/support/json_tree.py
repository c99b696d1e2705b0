"""Walking parsed JSON documents (OpenAPI, schemas) in tests."""

from typing import Any


def every_node(node: Any) -> list[Any]:
    """`node` and everything nested in it, depth first."""
    out = [node]
    if isinstance(node, dict):
        for value in node.values():
            out += every_node(value)
    elif isinstance(node, list):
        for value in node:
            out += every_node(value)
    return out
