"""Workflow definitions applied from a directory when the runs service starts."""

import logging
from pathlib import Path

from services.runs.domain.service import RunsService
from weftcore.logs import error_text

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")


async def apply_workflow_dir(service: RunsService, directory: str) -> None:
    """Apply every definition in `directory` (idempotent: unchanged files keep their
    version). A bad file is logged, never fatal: the service still has to start."""
    if not directory or not Path(directory).is_dir():
        return
    for path in sorted(Path(directory).iterdir()):
        if path.suffix not in SUFFIXES:
            continue
        try:
            applied = await service.workflows.apply(path.read_text())
        except Exception as exc:
            log.error("workflow not applied", extra={"file": str(path), "error": error_text(exc)})
            continue
        log.info(
            "workflow applied",
            extra={
                "file": path.name,
                "workflow_id": applied.row["id"],
                "version": applied.row["current_version"],
                "changed": applied.changed,
            },
        )
