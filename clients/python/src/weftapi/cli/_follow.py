"""Following a run to its end for `weft run` / `weft runs follow`: a spinner naming the
stage in progress, one line per finished stage, streamed tokens (`stage.delta`) as they
come, the review request of a waiting run. Events come from SSE; long-polling takes over
when the stream is not available."""

from __future__ import annotations

import time
from typing import Any, Optional

from rich.console import Console
from rich.progress import Progress as RichProgress
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

from weftapi import AsyncWeft, Run, RunEvent, WeftError
from weftapi.cli._render import request_panel


class Progress:
    """The live view on stderr: a spinner while a stage runs, a line per event."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.status: Optional[Any] = None  # the live spinner while it shows
        self.task: Optional[Any] = None
        self.label: Optional[str] = None
        self.streaming = False  # tokens were written since the last line
        self.last_status: Optional[str] = None
        self.shown_request: Optional[str] = None

    def _elapsed(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"

    def line(self, text: str) -> None:
        self._end_tokens()
        self.console.print(f"{self._elapsed()} {text}", markup=False, highlight=False)

    def spin(self, text: str) -> None:
        """Spinner, `text` and the time spent on it (a new text restarts the clock)."""
        if self.status is None:
            self.status = RichProgress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.status.start()
            self.label = None
        if text != self.label:
            if self.task is not None:
                self.status.remove_task(self.task)
            self.task = self.status.add_task(text, total=None)
            self.label = text

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
            self.task = None
        self._end_tokens()

    def _end_tokens(self) -> None:
        if self.streaming:
            self.console.file.write("\n")
            self.console.file.flush()
            self.streaming = False

    def tokens(self, text: str) -> None:
        if self.status is not None:  # the spinner would overwrite the text
            self.stop()
        self.console.file.write(text)
        self.console.file.flush()
        self.streaming = True

    def run_status(self, run: Run) -> None:
        if run.status != self.last_status:
            self.last_status = run.status
            self.line(f"run {run.id}: {run.status}")
        if run.status == "awaiting_input" and run.human_input_request is not None:
            key = run.human_input_request.stage
            if key != self.shown_request:
                self.shown_request = key
                self.stop()
                self.console.print(request_panel(run))
                self.spin(f"run {run.id} awaits input (it continues if you leave)")
        elif run.status in ("pending", "running") and self.status is None:
            self.spin(f"run {run.id} {run.status}")

    def event(self, event: RunEvent) -> None:
        run = event.data
        if event.type == "stage.delta":
            if event.delta:
                self.tokens(event.delta)
            return
        if event.type == "stage.started":
            self.line(f"> stage {event.stage or '?'} started")
            self.spin(f"stage {event.stage or '?'} running")
        elif event.type == "stage.completed":
            cost = next(
                (c for c in (run.cost_breakdown if run else []) if c.stage == event.stage), None
            )
            extra = f" ({cost.duration_ms} ms, {cost.cost_cents}c)" if cost else ""
            self.line(f"+ stage {event.stage or '?'} completed{extra}")
            self.spin(f"run {run.id if run else ''} running")
        if run is not None:
            self.run_status(run)


async def follow(weft: AsyncWeft, run: Run, progress: Progress) -> Run:
    """Follows the run until it is terminal (the caller bounds the time)."""
    progress.run_status(run)
    try:
        async for event in weft.runs.events(run.id):
            progress.event(event)
            if event.terminal:
                break
    except WeftError as exc:  # no stream (refused, or broke for good): long-poll instead
        progress.line(f"(event stream unavailable: {exc}; long-polling)")
    run = await weft.runs.get(run.id)  # the whole run, whatever the stream showed
    while not run.done:
        run = await weft.runs.get(run.id, wait=30)
        progress.run_status(run)
    progress.stop()
    return run
