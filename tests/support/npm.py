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
    lock = (project / "package-lock.json").read_bytes()
    digest = hashlib.sha256((project / "package.json").read_bytes() + lock).hexdigest()
    cache = PROJECT_ROOT / ".weft" / name / digest[:16]
    if (cache / "node_modules" / ".package-lock.json").exists():
        return cache / "node_modules"
    staging = cache.with_name(f"{cache.name}.{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for file in ("package.json", "package-lock.json"):
        shutil.copy(project / file, staging)
    done = subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=staging,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        if NETWORK.search(done.stdout + done.stderr):
            pytest.skip(f"the npm registry is unreachable: {done.stderr[-500:]}")
        pytest.fail(f"npm ci failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    shutil.rmtree(cache, ignore_errors=True)
    staging.rename(cache)
    return cache / "node_modules"
