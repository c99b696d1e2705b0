"""Finished runs, kept in the gateway: a terminal run never changes again, so polls of
it need not cross to the runs service. Bounded LRU, one per gateway process; every hit
is checked exactly as the runs service would (its owner, and the key's workflow
allowlist), else it is a miss and the service answers 404."""

from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass

from weftcore.events import TERMINAL_STATUSES


@dataclass(frozen=True)
class Viewer:
    """Who asks: the key's owner and its workflow allowlist (None: every workflow)."""

    user_id: str
    allowlist: Collection[str] | None

    def can_see(self, user_id: str, workflow_id: str) -> bool:
        return user_id == self.user_id and (self.allowlist is None or workflow_id in self.allowlist)


@dataclass(frozen=True)
class CachedRun:
    user_id: str
    workflow_id: str
    body: str  # the whole response body, `{"data": {...}}`


class TerminalRunCache:
    def __init__(self, max_entries: int = 20_000) -> None:
        self._max = max_entries
        self._runs: OrderedDict[str, CachedRun] = OrderedDict()

    def get(self, run_id: str, viewer: Viewer) -> str | None:
        """The cached body if `viewer` may see the run; None for a miss or anyone else."""
        hit = self._runs.get(run_id)
        if hit is None or not viewer.can_see(hit.user_id, hit.workflow_id):
            return None
        self._runs.move_to_end(run_id)
        return hit.body

    def put(self, run_id: str, user_id: str, workflow_id: str, status: str, body: str) -> None:
        """Keep the body if the run is terminal (anything else may still change)."""
        if status not in TERMINAL_STATUSES:
            return
        self._runs[run_id] = CachedRun(user_id, workflow_id, body)
        self._runs.move_to_end(run_id)
        while len(self._runs) > self._max:
            self._runs.popitem(last=False)
