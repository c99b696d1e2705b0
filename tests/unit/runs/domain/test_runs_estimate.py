"""A run's cost estimate counts its attachments by the token estimates storage kept at
upload: it never reads their texts back (five 2M-character texts overflowed a reply), so
it takes no storage client at all."""

import json

from services.runs.domain.create import estimate_stages
from weft.storage.v1 import storage_pb2
from weftcore.tokens import estimate_tokens

DEFINITION = {
    "stages": [
        {"id": "draft", "type": "template", "template": "x"},
        {"id": "answer", "type": "llm", "model": "local:m", "prompt": "Answer.", "max_tokens": 9},
    ]
}


def test_attachments_count_by_their_stored_token_estimates() -> None:
    params = {"topic": "moles"}
    attachments = [
        storage_pb2.Attachment(id="att_1", text_tokens=1_000),
        storage_pb2.Attachment(id="att_2", text_tokens=3_000_000),
    ]
    [stage] = estimate_stages(DEFINITION, "Summarise.", params, attachments)
    prompt = estimate_tokens("Summarise." + json.dumps(params))
    assert stage.input_tokens == prompt + 3_001_000 + estimate_tokens("Answer.")
    assert (stage.stage, stage.model, stage.max_output_tokens) == ("answer", "local:m", 9)


def test_a_run_without_llm_stages_estimates_nothing() -> None:
    definition = {"stages": [{"id": "t", "type": "template", "template": "x"}]}
    attachments = [storage_pb2.Attachment(id="att_1", text_tokens=10)]
    assert estimate_stages(definition, "Hi.", {}, attachments) == []
