"""node_modules for the tests' npm projects, installed once per lock file (`npm ci`).

Cached in .weft/<name>/<hash of package.json + package-lock.json>/node_modules, so a
test run installs only when the pinned packages change. Skips the test when the npm
registry is unreachable; fails it when Node.js or npm is missing, or `npm ci` fails.
"""

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack.stack import PROJECT_ROOT

NETWORK = re.compile(r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH")


def npm_packages(project: Path, name: str) -> Path:
    """The node_modules of the npm project in `project` (its package.json and lock)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("Node.js and npm are needed (the machine image has them: node --version)")
    files = {f: (project / f).read_bytes() for f in ("package.json", "package-lock.json")}
    digest = hashlib.sha256(files["package.json"] + files["package-lock.json"]).hexdigest()
    cache = PROJECT_ROOT / ".weft" / name / digest[:16]
    if not (cache / "node_modules" / ".package-lock.json").exists():
        install_cached(
            cache, files, ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], 600
        )
    return cache / "node_modules"


def install_cached(cache: Path, files: dict[str, bytes], command: list[str], timeout: int) -> None:
    """Run an npm install `command` in a staging folder holding `files`, then move the
    folder to `cache` whole (a failed or interrupted install never looks installed).
    Skips the test when the registry is unreachable; fails it when the install fails."""
    staging = cache.with_name(f"{cache.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, content in files.items():
        (staging / name).write_bytes(content)
    done = subprocess.run(command, cwd=staging, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        if NETWORK.search(done.stdout + done.stderr):
            pytest.skip(f"the npm registry is unreachable: {done.stderr[-500:]}")
        pytest.fail(f"{' '.join(command[:2])} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    shutil.rmtree(cache, ignore_errors=True)
    staging.rename(cache)
