"""The committed gRPC code is exactly what ./scripts/gen-protos makes from protos/."""

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_regenerating_the_grpc_code_changes_nothing(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / "scripts/gen-protos"), str(tmp_path)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "gen-protos produced nothing"
    committed = sorted(
        p.relative_to(ROOT)
        for p in (ROOT / "weft").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert generated == committed
    stale = [str(p) for p in generated if not filecmp.cmp(tmp_path / p, ROOT / p, shallow=False)]
    assert stale == [], f"run ./scripts/gen-protos and commit: {stale}"
