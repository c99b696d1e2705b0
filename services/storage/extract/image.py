"""Images: format and dimensions from the header (no OCR in v1)."""

from pathlib import Path

import imagesize
import puremagic

from services.storage.extract import ExtractionError, ExtractResult, Limits

_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}


def _format(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(4096)
    for match in puremagic.magic_string(head):
        if match.mime_type in _FORMATS:
            return _FORMATS[match.mime_type]
    raise ExtractionError("The image format is not PNG, JPEG, GIF or WebP.")


def extract(path: Path, limits: Limits) -> ExtractResult:
    fmt = _format(path)
    width, height = imagesize.get(str(path))
    if width <= 0 or height <= 0:
        raise ExtractionError(f"The {fmt.upper()} header is broken: no dimensions found.")
    return ExtractResult(
        "extracted",
        text=f"[Image: {fmt.upper()}, {width}x{height} pixels; no text extracted.]",
        metadata={"format": fmt, "width": width, "height": height},
    )
