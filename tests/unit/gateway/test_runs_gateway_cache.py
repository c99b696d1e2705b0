"""The gateway's cache of finished runs: owner and allowlist checked, terminal-only, bounded."""

from gateway.run_cache import TerminalRunCache, Viewer

OWNER = Viewer("usr_1", None)


def test_only_terminal_runs_are_kept_and_only_their_owner_sees_them() -> None:
    cache = TerminalRunCache()
    cache.put("run_a", "usr_1", "wf_a", "running", "{running}")
    assert cache.get("run_a", OWNER) is None
    cache.put("run_a", "usr_1", "wf_a", "completed", "{done}")
    assert cache.get("run_a", OWNER) == "{done}"
    assert cache.get("run_a", Viewer("usr_2", None)) is None
    for status in ("failed", "canceled"):
        cache.put(f"run_{status}", "usr_1", "wf_a", status, status)
        assert cache.get(f"run_{status}", OWNER) == status
    for status in ("pending", "awaiting_input"):
        cache.put(f"run_{status}", "usr_1", "wf_a", status, status)
        assert cache.get(f"run_{status}", OWNER) is None


def test_a_key_whose_allowlist_excludes_the_workflow_misses() -> None:
    cache = TerminalRunCache()
    cache.put("run_a", "usr_1", "wf_a", "completed", "{done}")
    assert cache.get("run_a", Viewer("usr_1", frozenset({"wf_b"}))) is None
    assert cache.get("run_a", Viewer("usr_1", frozenset())) is None
    assert cache.get("run_a", Viewer("usr_1", frozenset({"wf_a", "wf_b"}))) == "{done}"


def test_least_recently_used_runs_leave_first() -> None:
    cache = TerminalRunCache(max_entries=2)
    cache.put("run_1", "u", "w", "completed", "1")
    cache.put("run_2", "u", "w", "completed", "2")
    viewer = Viewer("u", None)
    assert cache.get("run_1", viewer) == "1"  # run_2 is now the least recently used
    cache.put("run_3", "u", "w", "completed", "3")
    assert cache.get("run_2", viewer) is None
    assert (cache.get("run_1", viewer), cache.get("run_3", viewer)) == ("1", "3")
