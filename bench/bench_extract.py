"""Extraction time: a 5,000-row CSV (target < 100 ms) and a 20-page PDF.

Prints the extractor's own time (in-process, median of N) and the time through the
sandbox (child process with limits), which is what an upload pays.
Run: .venv/bin/python -m bench.bench_extract
"""

import statistics
import tempfile
import time
from pathlib import Path

from services.storage.extract import Limits, extract_file
from services.storage.extract.sandbox import Sandbox
from tests.support import storage_files as files

RUNS = 7


def _median_ms(fn: object) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _sandbox_ms(sandbox: Sandbox, path: Path, kind: str) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        result = sandbox.run(path, kind, Limits(), path.with_suffix(".out"))
        assert result.status == "extracted", result.error
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as name:
        measure(Path(name))


def measure(tmp: Path) -> None:
    csv_path = tmp / "rows.csv"
    csv_path.write_bytes(files.csv_bytes(4999))  # + header = 5,000 rows
    pdf_path = tmp / "pages.pdf"
    pdf_path.write_bytes(files.pdf_bytes([f"Page {i} of the report. " * 6 for i in range(1, 21)]))
    result = extract_file(csv_path, "csv", Limits())
    assert result.row_count == 5000 and not result.truncated
    assert extract_file(pdf_path, "pdf", Limits()).metadata["pages"] == 20

    sandbox = Sandbox(timeout_seconds=30, memory_bytes=1024 * 1024 * 1024)
    sandbox.run(csv_path, "csv", Limits(), tmp / "warm.out")  # start the forkserver
    csv_ms = _median_ms(lambda: extract_file(csv_path, "csv", Limits()))
    pdf_ms = _median_ms(lambda: extract_file(pdf_path, "pdf", Limits()))
    print(
        f"csv 5,000 rows ({csv_path.stat().st_size:,} B): extractor {csv_ms:.1f} ms, "
        f"via sandbox {_sandbox_ms(sandbox, csv_path, 'csv'):.1f} ms (median of {RUNS})"
    )
    print(
        f"pdf 20 pages ({pdf_path.stat().st_size:,} B): extractor {pdf_ms:.1f} ms, "
        f"via sandbox {_sandbox_ms(sandbox, pdf_path, 'pdf'):.1f} ms (median of {RUNS})"
    )


if __name__ == "__main__":
    main()
