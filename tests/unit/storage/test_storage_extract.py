"""Extraction of every kind, and hostile files inside the sandbox (bounded, never a crash)."""

from pathlib import Path

import pytest

from services.storage.extract import Limits, extract_file
from services.storage.extract.json import check_depth
from services.storage.extract.sandbox import Sandbox
from tests.support import storage_files as files


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_csv_rows_text_and_truncation(tmp_path: Path) -> None:
    path = _write(tmp_path, "a.csv", files.csv_bytes(6000))
    result = extract_file(path, "csv", Limits(max_rows=5000))
    assert result.status == "extracted"
    assert result.row_count == 5000 and result.truncated
    assert result.text.startswith("id,name,amount\n1,name 1,1.50\n")
    assert "4999,name 4999" in result.text and "5000,name 5000" not in result.text
    assert "only the first 5,000 rows" in result.text


def test_csv_dialect_bom_and_latin1(tmp_path: Path) -> None:
    bom = _write(tmp_path, "b.csv", b"\xef\xbb\xbfname;city\nAnna;K\xc3\xb6ln\n")
    result = extract_file(bom, "csv", Limits())
    assert result.metadata["delimiter"] == ";"
    assert result.metadata["encoding"] == "utf-8-sig"
    assert result.text == "name,city\nAnna,K\u00f6ln\n"
    assert result.row_count == 2 and not result.truncated

    latin = _write(tmp_path, "l.csv", "name\tcity\nJos\u00e9\tM\u00e1laga\n".encode("latin-1"))
    result = extract_file(latin, "csv", Limits())
    assert result.metadata["encoding"] == "latin-1"
    assert "Jos\u00e9,M\u00e1laga" in result.text


def test_xlsx_rows_across_sheets(tmp_path: Path) -> None:
    data = files.xlsx_bytes({"Sales": [["region", "total"], ["north", 10]], "Costs": [["x"], [1]]})
    result = extract_file(_write(tmp_path, "a.xlsx", data), "xlsx", Limits(max_rows=3))
    assert result.status == "extracted"
    assert result.metadata["sheets"] == ["Sales", "Costs"]
    assert result.row_count == 3 and result.truncated
    assert "## Sheet: Sales\nregion,total\nnorth,10" in result.text
    assert "## Sheet: Costs\nx\n" in result.text


def test_pdf_page_text(tmp_path: Path) -> None:
    data = files.pdf_bytes(["Quarterly report", "Second page here"])
    result = extract_file(_write(tmp_path, "a.pdf", data), "pdf", Limits())
    assert result.status == "extracted"
    assert result.metadata["pages"] == 2
    assert "--- Page 1 ---\nQuarterly report" in result.text
    assert "--- Page 2 ---\nSecond page here" in result.text


def test_docx_paragraphs_and_tables(tmp_path: Path) -> None:
    data = files.docx_bytes(["Hello world", "Second"], table=[["a", "b"], ["1", "2"]])
    result = extract_file(_write(tmp_path, "a.docx", data), "docx", Limits())
    assert result.status == "extracted"
    assert result.text.index("Hello world") < result.text.index("a | b\n1 | 2")
    assert result.metadata == {"paragraphs": 2, "tables": 1}


def test_json_pretty_printed(tmp_path: Path) -> None:
    result = extract_file(_write(tmp_path, "a.json", b'{"a":[1,{"b":"\\"]"}]}'), "json", Limits())
    assert result.status == "extracted"
    assert result.text == '{\n  "a": [\n    1,\n    {\n      "b": "\\"]"\n    }\n  ]\n}'
    assert result.metadata["depth"] == 3


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert check_depth('["[[[[", {"k": "}}}"}]', 2) == 2


def test_text_and_markdown(tmp_path: Path) -> None:
    result = extract_file(_write(tmp_path, "a.md", b"# Title\n\nBody"), "md", Limits())
    assert (result.status, result.text) == ("extracted", "# Title\n\nBody")
    long = extract_file(_write(tmp_path, "b.txt", b"x" * 500), "txt", Limits(max_chars=100))
    assert long.truncated and long.text.startswith("x" * 100) and "Truncated" in long.text


@pytest.mark.parametrize(
    ("maker", "fmt"),
    [
        (files.png_bytes, "png"),
        (files.jpeg_bytes, "jpeg"),
        (files.gif_bytes, "gif"),
        (files.webp_bytes, "webp"),
    ],
)
def test_image_format_and_size(tmp_path: Path, maker: object, fmt: str) -> None:
    path = _write(tmp_path, "img", maker(640, 480))  # type: ignore[operator]
    result = extract_file(path, "image", Limits())
    assert result.status == "extracted"
    assert result.metadata == {"format": fmt, "width": 640, "height": 480}
    assert "640x480" in result.text


@pytest.mark.parametrize(
    ("name", "kind", "data", "error"),
    [
        ("empty.csv", "csv", b"", "empty"),
        ("bad.pdf", "pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", "could not be read"),
        ("bad.json", "json", b'{"a": ', "Invalid JSON"),
        ("bin.csv", "csv", b"a,b\n\x00\x01\x02", "NUL"),
        ("bad.docx", "docx", b"PK\x03\x04garbage", "not a valid Office package"),
        ("bad.png", "image", b"\x89PNG\r\n\x1a\n", "header is broken"),
    ],
)
def test_broken_files_fail_with_a_message(
    tmp_path: Path, name: str, kind: str, data: bytes, error: str
) -> None:
    result = extract_file(_write(tmp_path, name, data), kind, Limits())
    assert result.status == "failed"
    assert error in result.error


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(timeout_seconds=10, memory_bytes=1024 * 1024 * 1024)


@pytest.mark.parametrize("kind", ["docx", "xlsx"])
async def test_zip_bombs_are_refused(tmp_path: Path, sandbox: Sandbox, kind: str) -> None:
    path = _write(tmp_path, f"bomb.{kind}", files.zip_bomb(kind))
    result = sandbox.run(path, kind, Limits(), tmp_path / "t.txt")
    assert result.status == "failed"
    assert "zip bomb" in result.error


async def test_deep_json_is_refused(tmp_path: Path, sandbox: Sandbox) -> None:
    path = _write(tmp_path, "deep.json", files.deep_json(10_000))
    result = sandbox.run(path, "json", Limits(), tmp_path / "t.txt")
    assert result.status == "failed"
    assert "nested deeper than 64" in result.error


async def test_time_limit_kills_a_slow_extraction(tmp_path: Path) -> None:
    # 2,000,000-deep JSON under a huge depth limit: parsing is slow; the deadline wins.
    slow = Sandbox(timeout_seconds=0.05, memory_bytes=0)
    path = _write(tmp_path, "slow.json", files.deep_json(2_000_000))
    result = slow.run(path, "json", Limits(max_json_depth=10**9), tmp_path / "t.txt")
    assert result.status == "failed"
    assert "longer than 0.05 seconds" in result.error


async def test_memory_cap_turns_exhaustion_into_failed(tmp_path: Path) -> None:
    tight = Sandbox(timeout_seconds=30, memory_bytes=64 * 1024 * 1024)
    path = _write(tmp_path, "big.txt", b"x" * (80 * 1024 * 1024))
    result = tight.run(path, "txt", Limits(max_chars=100 * 1024 * 1024), tmp_path / "t.txt")
    assert result.status == "failed"
    assert "memory" in result.error


async def test_sandbox_returns_the_same_result_as_in_process(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    path = _write(tmp_path, "a.csv", files.csv_bytes(10))
    text_path = tmp_path / "t.txt"
    result = sandbox.run(path, "csv", Limits(), text_path)
    expected = extract_file(path, "csv", Limits())
    assert text_path.read_text(encoding="utf-8") == expected.text
    assert result.text_chars == len(expected.text)
    assert (result.status, result.row_count, result.metadata) == (
        expected.status,
        expected.row_count,
        expected.metadata,
    )


async def test_a_good_file_reuses_the_warm_child_and_a_bad_one_retires_it(
    tmp_path: Path,
) -> None:
    box = Sandbox(timeout_seconds=5, memory_bytes=0)
    good = _write(tmp_path, "a.csv", files.csv_bytes(10))
    assert box.run(good, "csv", Limits(), tmp_path / "1.txt").status == "extracted"
    [warm] = box._idle
    assert box.run(good, "csv", Limits(), tmp_path / "2.txt").status == "extracted"
    assert box._idle == [warm]  # the same child served both files
    slow = _write(tmp_path, "slow.json", files.deep_json(2_000_000))
    result = box.run(slow, "json", Limits(max_json_depth=10**9), tmp_path / "3.txt")
    assert result.status == "failed"
    assert box._idle == []  # the child that failed (deadline or depth) was not kept
    # The next file gets a fresh child and is unaffected.
    assert box.run(good, "csv", Limits(), tmp_path / "4.txt").status == "extracted"
    box.close()
    assert box._idle == []
