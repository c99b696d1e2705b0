"""DOCX: paragraphs and tables in document order (python-docx)."""

from pathlib import Path

import docx
from docx.table import Table

from services.storage.extract import ExtractResult, Limits, TextBuilder
from services.storage.extract.zipcheck import check_zip


def _table_text(table: Table) -> str:
    lines = [" | ".join(cell.text.strip() for cell in row.cells) for row in table.rows]
    return "\n".join(lines)


def extract(path: Path, limits: Limits) -> ExtractResult:
    check_zip(path, limits)
    document = docx.Document(str(path))
    builder = TextBuilder(limits.max_chars)
    paragraphs = 0
    tables = 0
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            tables += 1
            chunk = _table_text(block)
        else:
            paragraphs += 1
            chunk = block.text
        if chunk.strip() and not builder.add(chunk + "\n\n"):
            break
    return ExtractResult(
        "extracted",
        text=builder.build(),
        truncated=builder.full,
        metadata={"paragraphs": paragraphs, "tables": tables},
    )
