"""ManagedProcess: the life cycle every process of the dev stack shares (the backing
servers, the embedded LLM, Weft's own services). Every one:

* runs in its own process group; stop() signals it, waits, then SIGKILLs the group and
  every descendant, and returns only once none is alive (nothing is left behind),
* logs to a file in its data dir,
* binds to 127.0.0.1 only, on ports the caller chooses (see :func:`devstack.ports.free_port`),
* is considered started only after a *real* client call succeeds (polled, no fixed sleeps),
* can be stopped and started again on the same data dir (data is kept).

A pid file in each data dir lets a later run clean up a server orphaned by a crashed run
(that server would otherwise hold the data dir's locks).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from devstack.process_tree import (
    POLL_INTERVAL,
    exe_of,
    pid_alive,
    proc_stat,
    process_tree,
    same_file,
    terminate_tree,
)
from weftcore.ids import rfc3339


class ServerStartError(RuntimeError):
    """A backing server did not become ready; the message ends with its log tail."""


# Servers still running when the interpreter exits (e.g. a test crashed) are stopped.
_running: set[ManagedProcess] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()


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
            terminate_tree(proc.pid, self.stop_signal, grace)
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
        if pid != os.getpid() and pid_alive(pid) and same_file(exe_of(pid), binary):
            stat = proc_stat(pid)
            if stat is not None and stat.pgrp == pid:  # it leads its own group, as we made it
                print(
                    f"devstack: stopping leftover {self.name} (pid {pid}) on {self.data_dir}",
                    file=sys.stderr,
                )
                terminate_tree(pid, self.stop_signal, self.stop_timeout)
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
        # A JSON line like the process's own, so the whole file parses line by line.
        started = {
            "time": rfc3339(datetime.now(UTC)),
            "level": "INFO",
            "logger": "devstack",
            "message": f"starting {self.name}",
            "argv": [str(a) for a in argv],
        }
        log.write((json.dumps(started) + "\n").encode())
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
            time.sleep(POLL_INTERVAL)
