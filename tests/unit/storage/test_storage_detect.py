"""Kind detection (content first, then extension) and filename sanitising."""

import pytest

from services.storage.detect import cap_for, detect, sanitize_filename
from services.storage.errors import UnsupportedMediaType
from tests.support import storage_files as files


@pytest.mark.parametrize(
    ("head", "name", "kind", "content_type"),
    [
        (files.png_bytes(2, 2), "x.bin", "image", "image/png"),
        (files.jpeg_bytes(2, 2), "photo.csv", "image", "image/jpeg"),
        (files.gif_bytes(2, 2), "a", "image", "image/gif"),
        (files.webp_bytes(2, 2), "a.webp", "image", "image/webp"),
        (files.pdf_bytes(["x"]), "report.txt", "pdf", "application/pdf"),
        (files.docx_bytes(["hi"]), "a.docx", "docx", None),
        (b"a,b\n1,2\n", "data.csv", "csv", "text/csv"),
        (b"a;b\n1;2\n", "data.tsv", "csv", "text/csv"),
        (b'{"a": 1}', "data.json", "json", "application/json"),
        (b'{"a": 1}', "noext", "json", "application/json"),
        (b"# Title\n", "README.md", "md", "text/markdown"),
        (b"hello", "notes", "txt", "text/plain"),
        ("caf\u00e9".encode("latin-1"), "latin.csv", "csv", "text/csv"),
    ],
)
def test_detects_kind(head: bytes, name: str, kind: str, content_type: str | None) -> None:
    detected = detect(head[:8192], name)
    assert detected.kind == kind
    if content_type:
        assert detected.content_type == content_type


def test_ooxml_kind_comes_from_the_parts_when_the_extension_is_missing() -> None:
    assert detect(files.docx_bytes(["x"])[:8192], "upload").kind == "docx"
    assert detect(files.xlsx_bytes({"S": [[1]]})[:8192], "upload").kind == "xlsx"


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (bytes(range(256)) * 4, "data.csv"),  # binary disguised as CSV
        (b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 100, "tool.txt"),
        (b"PK\x03\x04" + b"\x00" * 26 + b"other/file.bin", "archive.zip"),
        (b"", "empty.bin"),
    ],
)
def test_unsupported_content_is_415(head: bytes, name: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        detect(head, name)
    assert info.value.code == "UNSUPPORTED_MEDIA_TYPE"


def test_empty_file_with_a_text_extension_is_accepted() -> None:
    assert detect(b"", "empty.txt").kind == "txt"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("a\x00b\x1fc\x7f.csv", "abc.csv"),
        ("line\nbreak\r.txt", "linebreak.txt"),
        ("..", "upload"),
        ("", "upload"),
        ("report\u202e.pdf", "report.pdf"),  # bidi override is a format (C) character
    ],
)
def test_sanitize_filename(raw: str, clean: str) -> None:
    assert sanitize_filename(raw) == clean


def test_sanitize_filename_keeps_the_extension_of_long_names() -> None:
    name = sanitize_filename("x" * 1000 + ".xlsx")
    assert len(name) <= 255 and name.endswith(".xlsx")


def test_tables_have_the_smaller_cap() -> None:
    assert cap_for("csv", 50, 20) == 20
    assert cap_for("xlsx", 50, 20) == 20
    assert cap_for("pdf", 50, 20) == 50
