"""The writer's statement arguments: one JSON document per input table."""

import json
from datetime import UTC, datetime

from services.runs.domain.transitions import (
    Completed,
    Created,
    RunState,
    StageCompleted,
    StageRef,
    StageResult,
    Started,
    advance,
)
from services.runs.store.writer import statement_arguments

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_a_result_beyond_64_bit_integers_is_still_written() -> None:
    state = RunState("run_1", "wf_1", 1, "usr_1", "", "usr_1", "hi", {}, [], None, False, T0)
    created = advance(state, [Created()], T0)
    huge = 2**70  # orjson refuses it; the standard library's path must take the rest
    done = advance(
        created.run,
        [
            Started("w1"),
            StageCompleted(StageRef(0, "t", "template"), StageResult(huge)),
            Completed(huge),
        ],
        T0,
    )
    runs, _, _, stages, events, _, outbox, updated, _ = statement_arguments([done], [None])
    assert json.loads(runs)[0]["result"] == huge
    assert json.loads(stages)[0]["started_at"] == "2026-12-07T12:00:00+00:00"
    assert [e["type"] for e in json.loads(events)][-1] == "run.completed"
    assert updated == ["run_1"] and len(json.loads(outbox)) == len(done.outbox)
    # Outbox rows are numbered in publish order, across the statement, without gaps.
    both = statement_arguments([created, done], [None, None])[6]
    assert [o["n"] for o in json.loads(both)] == list(
        range(1, len(created.outbox) + len(done.outbox) + 1)
    )
