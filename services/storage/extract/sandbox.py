"""Running one extraction in a child process with a time limit and a memory cap.

A hostile file (zip bomb, pathological PDF, deep nesting) can at worst exhaust its own
child: the child's address space is capped with RLIMIT_AS and it is killed at the
deadline. Children are forked from a `forkserver` that preloaded the parsers, so a start
costs milliseconds and never forks the gRPC server's threads.
"""

import asyncio
import dataclasses
import json
import multiprocessing
import resource
from pathlib import Path

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


def _child(
    path: str, kind: str, limits: Limits, memory_bytes: int, text_path: str, result_path: str
) -> None:
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    result = extract_to_file(Path(path), kind, limits, Path(text_path))
    Path(result_path).write_text(json.dumps(dataclasses.asdict(result)), encoding="utf-8")


class Sandbox:
    """Runs extractions in killable child processes."""

    def __init__(self, timeout_seconds: float, memory_bytes: int) -> None:
        self.timeout_seconds = timeout_seconds
        self.memory_bytes = memory_bytes
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(_PRELOAD)

    def _run(self, path: Path, kind: str, limits: Limits, text_path: Path) -> ExtractResult:
        result_path = path.with_name(path.name + ".result.json")
        process = self._ctx.Process(
            target=_child,
            args=(str(path), kind, limits, self.memory_bytes, str(text_path), str(result_path)),
            daemon=True,
        )
        process.start()
        try:
            process.join(self.timeout_seconds)
            if process.is_alive():
                process.kill()
                process.join()
                return ExtractResult(
                    "failed",
                    error=f"Extraction took longer than {self.timeout_seconds:g} seconds.",
                )
            if process.exitcode != 0 or not result_path.exists():
                return ExtractResult(
                    "failed", error="Extraction ran out of memory or crashed on this file."
                )
            data = json.loads(result_path.read_text(encoding="utf-8"))
            return ExtractResult(**data)
        finally:
            process.close()
            result_path.unlink(missing_ok=True)

    async def extract(
        self, path: Path, kind: str, limits: Limits, text_path: Path
    ) -> ExtractResult:
        """Extracts `path` in a child process, the text into `text_path` (see
        extract_to_file); never raises for a bad file."""
        return await asyncio.to_thread(self._run, path, kind, limits, text_path)
