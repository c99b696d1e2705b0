"""Kind detection: content (magic bytes) first, then the file name's extension.

Binary formats are recognised by their signature (puremagic); text formats cannot be told
apart by content alone, so a head that decodes as text is classified by extension (or
looks like JSON). Anything else is unsupported (415).
"""

import re
import unicodedata
from dataclasses import dataclass

import puremagic

from services.storage.errors import UnsupportedMediaType

SNIFF_BYTES = 8192

CONTENT_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "json": "application/json",
    "txt": "text/plain",
    "md": "text/markdown",
}
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
TABLE_KINDS = frozenset({"csv", "xlsx"})
_TEXT_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".txt": "txt",
    ".text": "txt",
    ".log": "txt",
    ".md": "md",
    ".markdown": "md",
}


@dataclass(frozen=True)
class Detected:
    kind: str  # csv | xlsx | pdf | docx | json | txt | md | image
    content_type: str


def sanitize_filename(name: str, max_length: int = 255) -> str:
    """The last path component of `name`, without control characters, at most 255 chars."""
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = name.strip().strip(".").strip()
    if len(name) > max_length:
        _stem, dot, ext = name.rpartition(".")
        keep = ext[:16] if dot else ""
        name = name[: max_length - len(keep) - 1] + "." + keep if keep else name[:max_length]
    return name or "upload"


def _extension(filename: str) -> str:
    dot = filename.rfind(".")
    return filename[dot:].lower() if dot > 0 else ""


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    if head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return True
    # A multi-byte character may be cut at the end of the head: ignore a short tail.
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3 and exc.reason in ("unexpected end of data",):
            return True
    # Latin-1 and friends: text if control characters (other than whitespace) are rare.
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return controls <= len(head) // 100


def _zip_kind(head: bytes, ext: str) -> str | None:
    # OOXML packages name their parts in the local headers near the start of the file.
    if ext in (".docx", ".xlsx"):
        return ext[1:]
    if b"word/" in head:
        return "docx"
    if b"xl/" in head:
        return "xlsx"
    return None


def detect(head: bytes, filename: str) -> Detected:
    """The kind of a file from its first bytes (up to SNIFF_BYTES) and its name."""
    ext = _extension(filename)
    if not head:
        # Nothing to sniff: trust a text extension (extraction then reports the empty file).
        kind = _TEXT_EXTENSIONS.get(ext)
        if kind is None:
            raise UnsupportedMediaType("The file is empty and its type is unknown.")
        return Detected(kind, CONTENT_TYPES[kind])
    try:
        matches = puremagic.magic_string(head[:SNIFF_BYTES])
    except (puremagic.PureError, ValueError):
        matches = []
    for match in matches:
        mime = match.mime_type
        if mime in IMAGE_TYPES:
            return Detected("image", mime)
        if mime == "application/pdf" or head.startswith(b"%PDF-"):
            return Detected("pdf", CONTENT_TYPES["pdf"])
    if head.startswith(b"PK\x03\x04"):
        zip_kind = _zip_kind(head, ext)
        if zip_kind is None:
            raise UnsupportedMediaType("Unsupported archive type; upload DOCX or XLSX.")
        return Detected(zip_kind, CONTENT_TYPES[zip_kind])
    if _looks_like_text(head):
        kind = _TEXT_EXTENSIONS.get(ext)
        if kind is None:
            kind = "json" if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[") else "txt"
        return Detected(kind, CONTENT_TYPES[kind])
    raise UnsupportedMediaType(
        "Unsupported file type. Upload CSV, XLSX, PDF, DOCX, JSON, TXT, MD or an image "
        "(PNG, JPEG, GIF, WebP)."
    )


def cap_for(kind: str, max_upload_bytes: int, max_table_upload_bytes: int) -> int:
    """The size cap of a kind: tables have their own, smaller one."""
    if kind in TABLE_KINDS:
        return min(max_upload_bytes, max_table_upload_bytes)
    return max_upload_bytes
