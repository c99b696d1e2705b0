"""Binding multipart form fields and files to declared fields (gateway/multipart_runs.py)."""

from typing import Any

import pytest

from gateway.multipart_runs import MultipartBody, coerce, form_run
from weftcore.canonical import multipart_body_hash
from weftcore.errors import InvalidArgument

FIELDS: list[dict[str, Any]] = [
    {"name": "topic", "type": "text", "required": True},
    {"name": "n", "type": "integer"},
    {"name": "ratio", "type": "number"},
    {"name": "loud", "type": "boolean"},
    {"name": "meta", "type": "json"},
    {"name": "tone", "type": "select", "constraints": {"options": ["calm", 3, True]}},
    {"name": "doc", "type": "file"},
]
BY_NAME = {f["name"]: f for f in FIELDS}


def test_values_are_coerced_to_declared_types() -> None:
    assert coerce(BY_NAME["n"], " 42 ", "n") == 42
    assert coerce(BY_NAME["ratio"], "0.5", "ratio") == 0.5
    assert coerce(BY_NAME["ratio"], "2", "ratio") == 2
    assert coerce(BY_NAME["loud"], "TRUE", "loud") is True
    assert coerce(BY_NAME["loud"], "off", "loud") is False
    assert coerce(BY_NAME["meta"], '{"a": [1]}', "meta") == {"a": [1]}
    assert coerce(BY_NAME["tone"], "3", "tone") == 3
    assert coerce(BY_NAME["tone"], "true", "tone") is True
    assert coerce(BY_NAME["topic"], " keep spaces ", "topic") == " keep spaces "
    assert coerce(BY_NAME["n"], "", "n") is None  # empty typed input: not given


@pytest.mark.parametrize(
    ("name", "raw"), [("n", "4.5"), ("ratio", "nan"), ("loud", "maybe"), ("meta", "{")]
)
def test_bad_values_are_400_naming_the_field(name: str, raw: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        coerce(BY_NAME[name], raw, name)
    assert info.value.param == name


def test_files_bind_to_file_fields_by_name_and_others_become_attachments() -> None:
    body = MultipartBody(
        fields=[("input_text", "hi"), ("topic", "x"), ("webhook_url", "https://h/")],
        files=[("doc", "att_1", "d1"), ("extra", "att_2", "d2")],
    )
    run = form_run(FIELDS, body)
    assert run.input_text == "hi"
    assert run.params == {"topic": "x", "doc": "att_1"}
    assert run.attachment_ids == ["att_2"]
    assert run.webhook_url == "https://h/"


def test_input_text_is_always_accepted_and_a_declared_one_is_also_a_param() -> None:
    body = MultipartBody(fields=[("topic", "x")])
    assert form_run(FIELDS, body).input_text == ""
    body = MultipartBody(fields=[("input_text", "say hi"), ("topic", "x")])
    run = form_run(FIELDS, body)
    assert run.input_text == "say hi" and "input_text" not in run.params
    declared: list[dict[str, Any]] = [*FIELDS, {"name": "input_text", "type": "text"}]
    run = form_run(declared, body)
    assert run.input_text == "say hi" and run.params["input_text"] == "say hi"


def test_unknown_and_repeated_fields_are_400() -> None:
    with pytest.raises(InvalidArgument) as info:
        form_run(FIELDS, MultipartBody(fields=[("nope", "1")]))
    assert info.value.param == "nope"
    with pytest.raises(InvalidArgument) as info:
        form_run(FIELDS, MultipartBody(fields=[("n", "1"), ("n", "2")]))
    assert info.value.param == "n"


def test_request_hash_covers_fields_and_file_digests_not_attachment_ids() -> None:
    a = MultipartBody(fields=[("topic", "x")], files=[("doc", "att_1", "abc")])
    b = MultipartBody(fields=[("topic", "x")], files=[("doc", "att_2", "abc")])
    c = MultipartBody(fields=[("topic", "x")], files=[("doc", "att_1", "def")])
    assert a.request_hash == b.request_hash != c.request_hash
    assert a.request_hash == multipart_body_hash([("topic", "x")], [("doc", "abc")])
