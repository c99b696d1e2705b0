"""The gateway's cache of finished runs: owner-only, terminal-only, bounded."""

from gateway.run_cache import TerminalRunCache


def test_only_terminal_runs_are_kept_and_only_their_owner_sees_them() -> None:
    cache = TerminalRunCache()
    cache.put("run_a", "usr_1", "running", "{running}")
    assert cache.get("run_a", "usr_1") is None
    cache.put("run_a", "usr_1", "completed", "{done}")
    assert cache.get("run_a", "usr_1") == "{done}"
    assert cache.get("run_a", "usr_2") is None
    for status in ("failed", "canceled"):
        cache.put(f"run_{status}", "usr_1", status, status)
        assert cache.get(f"run_{status}", "usr_1") == status
    for status in ("pending", "awaiting_input"):
        cache.put(f"run_{status}", "usr_1", status, status)
        assert cache.get(f"run_{status}", "usr_1") is None


def test_least_recently_used_runs_leave_first() -> None:
    cache = TerminalRunCache(max_entries=2)
    cache.put("run_1", "u", "completed", "1")
    cache.put("run_2", "u", "completed", "2")
    assert cache.get("run_1", "u") == "1"  # run_2 is now the least recently used
    cache.put("run_3", "u", "completed", "3")
    assert cache.get("run_2", "u") is None
    assert (cache.get("run_1", "u"), cache.get("run_3", "u")) == ("1", "3")
