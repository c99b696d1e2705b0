"""The README's tour uses only files that are in the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_file_the_readme_uploads_is_in_the_repo() -> None:
    readme = (ROOT / "README.md").read_text()
    paths = re.findall(r"(?:file=@|--attach )([\w./-]+)", readme)
    assert paths, "the tour uploads a file"
    for path in paths:
        assert (ROOT / path).is_file(), f"README uses {path}, which the repo does not have"
