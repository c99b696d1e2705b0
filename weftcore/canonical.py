"""Canonical request hashes for idempotency: equal for equal parsed bodies, whatever the
key order or whitespace of the JSON text, or the order of multipart parts."""

import hashlib
import json
from collections.abc import Iterable
from typing import Any


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_body_hash(data: Any) -> str:
    """sha256 (hex) of a parsed JSON body in canonical form."""
    return hashlib.sha256(b"json:" + canonical_json(data).encode()).hexdigest()


def multipart_body_hash(fields: Iterable[tuple[str, str]], files: Iterable[tuple[str, str]]) -> str:
    """sha256 (hex) of a multipart body: its form fields (name, value) and its file parts
    as (field name, sha256 hex of the content), each set sorted."""
    doc = {"fields": sorted([n, v] for n, v in fields), "files": sorted([n, d] for n, d in files)}
    return hashlib.sha256(b"multipart:" + canonical_json(doc).encode()).hexdigest()
