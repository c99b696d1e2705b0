"""Text extraction, one module per kind, each `extract(path, limits) -> ExtractResult`.

Extractors run inside a sandboxed child process (see sandbox.py); here they only need to
turn a readable file into bounded text or raise ExtractionError with a clear message.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weftcore.tokens import estimate_tokens


@dataclass(frozen=True)
class Limits:
    max_rows: int = 5000
    max_chars: int = 2_000_000
    max_json_depth: int = 64
    max_zip_bytes: int = 200 * 1024 * 1024
    max_zip_ratio: int = 200
    max_zip_members: int = 10_000


@dataclass
class ExtractResult:
    status: str  # extracted | failed | not_applicable
    text: str = ""
    error: str = ""
    row_count: int = 0
    truncated: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    text_chars: int = 0  # set when the text went to a file instead of `text`
    text_tokens: int = 0  # its estimated prompt tokens, likewise


class ExtractionError(Exception):
    """The file cannot be extracted; the message is shown to the uploader."""


class TextBuilder:
    """Accumulates text up to a character cap and remembers whether it had to cut."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.parts: list[str] = []
        self.size = 0
        self.full = False

    def add(self, text: str) -> bool:
        """Appends `text` (cut at the cap); False once the cap is reached."""
        if self.full:
            return False
        room = self.max_chars - self.size
        if len(text) > room:
            text = text[:room]
            self.full = True
        self.parts.append(text)
        self.size += len(text)
        return not self.full

    def build(self, note: str = "") -> str:
        text = "".join(self.parts)
        if self.full:
            note = note or f"[Truncated: the text was cut at {self.max_chars:,} characters.]"
        return f"{text.rstrip()}\n\n{note}" if note else text


def extract_file(path: Path, kind: str, limits: Limits) -> ExtractResult:
    """Extracts `path` as `kind`; every failure becomes status `failed` with a message."""
    from services.storage.extract import csv, docx, image, json, pdf, text, xlsx

    extractors = {
        "csv": csv.extract,
        "xlsx": xlsx.extract,
        "pdf": pdf.extract,
        "docx": docx.extract,
        "json": json.extract,
        "txt": text.extract,
        "md": text.extract,
        "image": image.extract,
    }
    extractor = extractors.get(kind)
    if extractor is None:
        return ExtractResult("not_applicable")
    try:
        if path.stat().st_size == 0:
            raise ExtractionError("The file is empty.")
        return extractor(path, limits)
    except ExtractionError as exc:
        return ExtractResult("failed", error=str(exc))
    except MemoryError:
        return ExtractResult("failed", error="The file needs too much memory to extract.")
    except RecursionError:
        return ExtractResult("failed", error="The file is nested too deeply to extract.")
    except Exception as exc:
        # Parsers raise many kinds of errors on broken input; all mean "unreadable".
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return ExtractResult("failed", error=f"The {kind} file could not be read: {detail}")


def extract_to_file(path: Path, kind: str, limits: Limits, text_path: Path) -> ExtractResult:
    """Like extract_file, but writes the text to `text_path` (UTF-8) and leaves
    `text` empty, so big texts never travel through the caller's memory. Its size and
    token estimate are counted here, where the text is at hand."""
    result = extract_file(path, kind, limits)
    if result.text:
        text_path.write_text(result.text, encoding="utf-8")
    result.text_chars = len(result.text)
    result.text_tokens = estimate_tokens(result.text)
    result.text = ""
    return result
