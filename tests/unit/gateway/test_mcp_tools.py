"""The MCP tools made from workflows: names, input schemas, call options."""

import json
from typing import Any

import pytest

from gateway.mcp import lifecycle, tools
from weft.runs.v1 import runs_pb2
from weftcore.errors import InvalidArgument

FIELDS: list[dict[str, Any]] = [
    {"name": "count", "type": "integer", "required": True, "constraints": {"min": 1}},
    {"name": "wait_seconds", "type": "text"},  # a field wins over the option's name
]


def _workflow(slug: str, fields: list[dict[str, Any]] | None = None) -> runs_pb2.Workflow:
    return runs_pb2.Workflow(
        id="wf_abc", slug=slug, name="Count", fields_json=json.dumps(fields or [])
    )


def test_a_tool_is_named_by_slug_unless_the_slug_is_no_tool_name() -> None:
    assert tools.tool_name(_workflow("count-things")) == "count-things"
    assert tools.tool_name(_workflow("get_run")) == "wf_abc"  # reserved
    assert tools.tool_name(_workflow("with space")) == "wf_abc"
    assert tools.tool_name(_workflow("x" * 65)) == "wf_abc"


def test_the_input_schema_is_the_flat_body_with_call_options() -> None:
    tool = tools.workflow_tool(_workflow("count-things", FIELDS))
    schema = tool.inputSchema
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["required"] == ["count"]
    assert schema["properties"]["count"] == {"type": "integer", "minimum": 1}
    assert schema["properties"]["wait_seconds"] == {"type": "string"}  # the field's
    assert schema["properties"]["idempotency_key"]["maxLength"] == 256
    assert "input_text" in schema["properties"] and tool.title == "Count"
    assert "wf_abc" in (tool.description or "")


def test_wait_seconds_is_bounded() -> None:
    assert lifecycle.wait_seconds({}, 45, 300) == 45
    assert lifecycle.wait_seconds({"wait_seconds": 0}, 45, 300) == 0
    for bad in (-1, 301, "5", True, 1.5):
        with pytest.raises(InvalidArgument) as refused:
            lifecycle.wait_seconds({"wait_seconds": bad}, 45, 300)
        assert refused.value.param == "wait_seconds" and refused.value.code == "INVALID_PARAM"
