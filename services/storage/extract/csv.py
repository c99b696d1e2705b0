"""CSV: dialect sniffing, UTF-8 (with or without BOM) or Latin-1, the first N rows."""

import codecs
import csv
import io
import itertools
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
        try:
            # One row past the limit tells whether the file goes on.
            rows = list(itertools.islice(csv.reader(f, dialect), limits.max_rows + 1))
        except csv.Error as exc:
            raise ExtractionError(f"Malformed CSV: {exc}") from None
    more_rows = len(rows) > limits.max_rows
    del rows[limits.max_rows :]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    builder = TextBuilder(limits.max_chars)
    builder.add(out.getvalue())
    truncated = more_rows or builder.full
    columns = max(map(len, rows), default=0)
    rows_read = len(rows)
    note = f"[Truncated: only the first {rows_read:,} rows were read.]" if more_rows else ""
    return ExtractResult(
        "extracted",
        text=builder.build(note),
        row_count=rows_read,
        truncated=truncated,
        metadata={
            "encoding": encoding,
            "delimiter": getattr(dialect, "delimiter", ","),
            "columns": columns,
        },
    )
