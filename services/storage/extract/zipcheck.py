"""Refusing zip bombs before a DOCX/XLSX parser opens the package."""

import zipfile
from pathlib import Path

from services.storage.extract import ExtractionError, Limits

# Small members may compress extremely well (repeated XML) without harm.
_RATIO_CHECK_FLOOR = 1024 * 1024


def check_zip(path: Path, limits: Limits) -> None:
    """Raise ExtractionError unless the package's declared sizes are within limits.

    zipfile never inflates a member past its declared size, so checking the central
    directory bounds what a parser can be made to decompress.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ExtractionError(f"The file is not a valid Office package: {exc}") from None
    if len(members) > limits.max_zip_members:
        raise ExtractionError(f"The package has too many parts ({len(members):,}).")
    total = 0
    for member in members:
        total += member.file_size
        if total > limits.max_zip_bytes:
            raise ExtractionError(
                "The package expands to more than "
                f"{limits.max_zip_bytes // (1024 * 1024)} MiB (possible zip bomb)."
            )
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > _RATIO_CHECK_FLOOR and ratio > limits.max_zip_ratio:
            raise ExtractionError(
                f"Part {member.filename!r} is compressed {ratio:,.0f}:1 (possible zip bomb)."
            )
