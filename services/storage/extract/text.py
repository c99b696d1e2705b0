"""TXT and Markdown: decoded as UTF-8 (BOM aware), Latin-1 as a fallback."""

from pathlib import Path

from services.storage.extract import ExtractResult, Limits, TextBuilder
from services.storage.extract.csv import detect_encoding


def extract(path: Path, limits: Limits) -> ExtractResult:
    # Read only what can be kept (4 bytes per character at most), never the whole file.
    with path.open("rb") as f:
        raw = f.read(limits.max_chars * 4 + 4)
        more = bool(f.read(1))
    encoding = detect_encoding(raw[: 64 * 1024])
    text = raw.decode(encoding, errors="replace")
    builder = TextBuilder(limits.max_chars)
    builder.add(text)
    if more and not builder.full:
        builder.full = True
    return ExtractResult(
        "extracted",
        text=builder.build(),
        truncated=builder.full,
        metadata={"encoding": encoding, "lines": text.count("\n") + 1},
    )
