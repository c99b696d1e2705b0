"""PDF: the text of each page (pypdf)."""

import logging
from pathlib import Path

from pypdf import PdfReader

from services.storage.extract import ExtractionError, ExtractResult, Limits, TextBuilder

# pypdf logs a warning per oddity in a broken file; the result says what matters.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def extract(path: Path, limits: Limits) -> ExtractResult:
    reader = PdfReader(path, strict=False)
    if reader.is_encrypted and not reader.decrypt(""):
        raise ExtractionError("The PDF is encrypted.")
    pages = len(reader.pages)
    if pages == 0:
        raise ExtractionError("The PDF has no pages.")
    builder = TextBuilder(limits.max_chars)
    read = 0
    for number, page in enumerate(reader.pages, start=1):
        read = number
        if not builder.add(f"--- Page {number} ---\n{(page.extract_text() or '').strip()}\n\n"):
            break
    note = ""
    if builder.full:
        note = f"[Truncated: text cut at {limits.max_chars:,} characters, page {read} of {pages}.]"
    return ExtractResult(
        "extracted",
        text=builder.build(note),
        truncated=builder.full,
        metadata={"pages": pages},
    )
