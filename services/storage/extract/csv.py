"""CSV: dialect sniffing, UTF-8 (with or without BOM) or Latin-1, the first N rows."""

import codecs
import csv
import io
from pathlib import Path

from services.storage.extract import ExtractionError, ExtractResult, Limits, TextBuilder

_SAMPLE_BYTES = 64 * 1024
_SNIFF_CHARS = 16 * 1024  # the Sniffer's regexes get slow on large samples


def detect_encoding(head: bytes) -> str:
    """utf-8-sig with a BOM, utf-8 if the head decodes, else latin-1 (never fails)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "latin-1"


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample[:_SNIFF_CHARS], delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def extract(path: Path, limits: Limits) -> ExtractResult:
    with path.open("rb") as raw:
        head = raw.read(_SAMPLE_BYTES)
    if b"\x00" in head:
        raise ExtractionError("The file is not text (it contains NUL bytes).")
    encoding = detect_encoding(head)
    with path.open(newline="", encoding=encoding, errors="replace") as f:
        sample = f.read(_SNIFF_CHARS)
        if not sample.strip():
            raise ExtractionError("The file has no rows.")
        dialect = _dialect(sample)
        f.seek(0)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        builder = TextBuilder(limits.max_chars)
        rows = 0
        columns = 0
        truncated = False
        try:
            for row in csv.reader(f, dialect):
                if rows >= limits.max_rows:
                    truncated = True
                    break
                rows += 1
                columns = max(columns, len(row))
                writer.writerow(row)
                if not builder.add(out.getvalue()):
                    truncated = True
                    break
                out.seek(0)
                out.truncate()
        except csv.Error as exc:
            raise ExtractionError(f"Malformed CSV at row {rows + 1}: {exc}") from None
    note = ""
    if truncated:
        note = f"[Truncated: only the first {rows:,} rows were read.]"
    return ExtractResult(
        "extracted",
        text=builder.build(note),
        row_count=rows,
        truncated=truncated,
        metadata={
            "encoding": encoding,
            "delimiter": getattr(dialect, "delimiter", ","),
            "columns": columns,
        },
    )
