"""XLSX: openpyxl in read-only (streaming) mode, the first N rows across all sheets."""

import csv
import io
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import openpyxl

from services.storage.extract import ExtractResult, Limits, TextBuilder
from services.storage.extract.zipcheck import check_zip


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def extract(path: Path, limits: Limits) -> ExtractResult:
    check_zip(path, limits)
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        sheet_names = list(workbook.sheetnames)
        builder = TextBuilder(limits.max_chars)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        rows = 0
        truncated = False
        for sheet in workbook.worksheets:
            if truncated:
                break
            builder.add(f"## Sheet: {sheet.title}\n")
            for values in sheet.iter_rows(values_only=True):
                if rows >= limits.max_rows:
                    truncated = True
                    break
                rows += 1
                writer.writerow([_cell(v) for v in values])
                if not builder.add(out.getvalue()):
                    truncated = True
                    break
                out.seek(0)
                out.truncate()
            builder.add("\n")
    finally:
        workbook.close()
    note = f"[Truncated: only the first {rows:,} rows were read.]" if truncated else ""
    return ExtractResult(
        "extracted",
        text=builder.build(note),
        row_count=rows,
        truncated=truncated,
        metadata={"sheets": sheet_names},
    )
