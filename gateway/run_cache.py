"""Finished runs, kept in the gateway: a terminal run never changes again, so polls of
it need not cross to the runs service. Bounded LRU, one per gateway process; the owner
is checked on every hit exactly as the runs service would (else 404 from the service)."""

from collections import OrderedDict
from dataclasses import dataclass

from weftcore.events import TERMINAL_STATUSES


@dataclass(frozen=True)
class CachedRun:
    user_id: str
    body: str  # the whole response body, `{"data": {...}}`


class TerminalRunCache:
    def __init__(self, max_entries: int = 20_000) -> None:
        self._max = max_entries
        self._runs: OrderedDict[str, CachedRun] = OrderedDict()

    def get(self, run_id: str, user_id: str) -> str | None:
        """The cached body for the run's owner; None for a miss or anyone else."""
        hit = self._runs.get(run_id)
        if hit is None or hit.user_id != user_id:
            return None
        self._runs.move_to_end(run_id)
        return hit.body

    def put(self, run_id: str, user_id: str, status: str, body: str) -> None:
        """Keep the body if the run is terminal (anything else may still change)."""
        if status not in TERMINAL_STATUSES:
            return
        self._runs[run_id] = CachedRun(user_id, body)
        self._runs.move_to_end(run_id)
        while len(self._runs) > self._max:
            self._runs.popitem(last=False)
