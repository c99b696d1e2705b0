"""The snippets' call model: placeholders from the declared fields."""

from typing import Any


def test_a_file_placeholder_has_an_accepted_extension() -> None:
    from gateway.snippets.model import call_spec

    fields: list[dict[str, Any]] = [
        {"name": "sheet", "type": "file", "constraints": {"kinds": ["xlsx", "csv"]}},
        {"name": "photo", "type": "file", "constraints": {"kinds": ["image"]}},
        {"name": "doc", "type": "file"},
    ]
    spec = call_spec("https://w.example", "wf_1", fields, "multipart")
    assert [f.path for f in spec.files] == ["./sheet.xlsx", "./photo.png", "./doc.pdf"]
