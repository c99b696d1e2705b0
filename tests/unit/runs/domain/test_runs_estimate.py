"""A run's cost estimate counts its attachments by the token estimates storage kept at
upload: it never reads their texts back (five 2M-character texts overflowed a reply)."""

import json
from typing import Any

from services.runs.domain.create import CreateRunInput, RunCreator
from weft.storage.v1 import storage_pb2
from weftcore.tokens import estimate_tokens

DEFINITION = {
    "stages": [
        {"id": "draft", "type": "template", "template": "x"},
        {"id": "answer", "type": "llm", "model": "local:m", "prompt": "Answer.", "max_tokens": 9},
    ]
}


class NoStorage:
    """Any call to storage fails the test: the estimate must not need one."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the estimate called storage.{name}")


def _creator() -> RunCreator:
    unused: Any = None
    return RunCreator(unused, unused, NoStorage(), unused, unused)  # type: ignore[arg-type]


def test_attachments_count_by_their_stored_token_estimates() -> None:
    params = {"topic": "moles"}
    inp = CreateRunInput("wf_1", "Summarise.", params, ["att_1", "att_2"], "", None)
    attachments = [
        storage_pb2.Attachment(id="att_1", text_tokens=1_000),
        storage_pb2.Attachment(id="att_2", text_tokens=3_000_000),
    ]
    [stage] = _creator()._estimate(DEFINITION, inp, params, attachments)
    prompt = estimate_tokens("Summarise." + json.dumps(params))
    assert stage.input_tokens == prompt + 3_001_000 + estimate_tokens("Answer.")
    assert (stage.stage, stage.model, stage.max_output_tokens) == ("answer", "local:m", 9)


def test_a_run_without_llm_stages_estimates_nothing() -> None:
    inp = CreateRunInput("wf_1", "Hi.", {}, ["att_1"], "", None)
    definition = {"stages": [{"id": "t", "type": "template", "template": "x"}]}
    attachments = [storage_pb2.Attachment(id="att_1", text_tokens=10)]
    assert _creator()._estimate(definition, inp, {}, attachments) == []
