"""Running extractions in child processes with a time limit and a memory cap.

A hostile file (zip bomb, pathological PDF, deep nesting) can at worst exhaust its own
child: the child's address space is capped with RLIMIT_AS and it is killed at the
deadline. Children come from a `forkserver` that preloaded the parsers (so they never
fork the gRPC server's threads) and are kept warm between extractions: a fresh child
pays ~60-90 ms of first-use costs (page faults, caches) that a reused one does not. A
child is retired after a failed extraction, a timeout, or `MAX_TASKS_PER_CHILD` files,
so one bad file can never affect the next.

`Sandbox.run` blocks its thread while the child works: extract/pool.py gives it threads
of its own and decides whose file goes next.
"""

import dataclasses
import multiprocessing
import resource
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from services.storage.extract import ExtractResult, Limits, extract_to_file

_PRELOAD = [
    "__main__",  # children then find the entry module already imported
    "services.storage.extract",
    "services.storage.extract.csv",
    "services.storage.extract.xlsx",
    "services.storage.extract.pdf",
    "services.storage.extract.docx",
    "services.storage.extract.json",
    "services.storage.extract.text",
    "services.storage.extract.image",
]
MAX_TASKS_PER_CHILD = 100
MAX_IDLE_CHILDREN = 2


def _serve(conn: Connection, memory_bytes: int) -> None:
    """The child's loop: one (path, kind, limits, text_path) job in, one result out."""
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    while True:
        try:
            path, kind, limits, text_path = conn.recv()
        except EOFError:
            return
        result = extract_to_file(Path(path), kind, limits, Path(text_path))
        conn.send(dataclasses.asdict(result))


class _Child:
    def __init__(self, ctx: Any, memory_bytes: int) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child_conn, memory_bytes), daemon=True)
        self.process.start()
        child_conn.close()
        self.tasks = 0

    def stop(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.process.close()


class Sandbox:
    """Runs extractions in killable, reusable child processes."""

    def __init__(self, timeout_seconds: float, memory_bytes: int) -> None:
        self.timeout_seconds = timeout_seconds
        self.memory_bytes = memory_bytes
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(_PRELOAD)
        self._idle: list[_Child] = []
        self._lock = threading.Lock()

    def _take(self) -> _Child:
        with self._lock:
            while self._idle:
                child = self._idle.pop()
                if child.process.is_alive():
                    return child
                child.stop()
        return _Child(self._ctx, self.memory_bytes)

    def _give_back(self, child: _Child) -> None:
        with self._lock:
            if child.tasks < MAX_TASKS_PER_CHILD and len(self._idle) < MAX_IDLE_CHILDREN:
                self._idle.append(child)
                return
        child.stop()

    def run(self, path: Path, kind: str, limits: Limits, text_path: Path) -> ExtractResult:
        """Extracts `path` in a child process, the text into `text_path` (see
        extract_to_file); blocks until it is done, never raises for a bad file."""
        child = self._take()
        child.tasks += 1
        try:
            child.conn.send((str(path), kind, limits, str(text_path)))
            if not child.conn.poll(self.timeout_seconds):
                child.stop()
                return ExtractResult(
                    "failed",
                    error=f"Extraction took longer than {self.timeout_seconds:g} seconds.",
                )
            result = ExtractResult(**child.conn.recv())
        except (EOFError, OSError):
            # The child died mid-file: the memory cap (or a crash in a parser).
            child.stop()
            return ExtractResult(
                "failed", error="Extraction ran out of memory or crashed on this file."
            )
        if result.status == "failed":
            child.stop()  # whatever the file did to it, the next file gets a fresh child
        else:
            self._give_back(child)
        return result

    def close(self) -> None:
        """Stops the idle children (busy ones stop when their extraction ends)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.stop()
