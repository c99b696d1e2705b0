"""Webhook.construct_event against signatures made by the server's own signer."""

import json
import time

import pytest
from weftapi import Webhook, WebhookVerificationError

from services.runs.delivery.webhooks import sign as server_sign

SECRET = "whsec_" + "ab" * 32
BODY = json.dumps(
    {"id": "evt_1", "type": "run.completed", "created_at": "t",
     "data": {"id": "run_1", "workflow_id": "wf_1", "status": "completed", "result": {"a": 1}}},
    separators=(",", ":"),
).encode()  # fmt: skip


def test_a_delivery_signed_by_the_server_verifies_and_parses() -> None:
    header = server_sign(SECRET, BODY, int(time.time()))
    event = Webhook.construct_event(BODY, {"weft-signature": header}, SECRET)
    assert event.id == "evt_1" and event.type == "run.completed"
    assert event.data.status == "completed" and event.data.result == {"a": 1}
    assert Webhook.sign(BODY, SECRET, 1700000000) == server_sign(SECRET, BODY, 1700000000)
    Webhook.verify(BODY.decode(), header, SECRET)  # str payload and a bare header value


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing Weft-Signature"),
        ({"Weft-Signature": "garbage"}, "malformed"),
        ({"Weft-Signature": "t=now,v1=00"}, "malformed"),
    ],
)
def test_missing_or_malformed_headers_are_refused(headers: dict[str, str], message: str) -> None:
    with pytest.raises(WebhookVerificationError, match=message):
        Webhook.construct_event(BODY, headers, SECRET)


def test_a_wrong_secret_or_changed_body_is_refused() -> None:
    header = server_sign(SECRET, BODY, int(time.time()))
    with pytest.raises(WebhookVerificationError, match="does not match"):
        Webhook.construct_event(BODY, {"Weft-Signature": header}, "whsec_other")
    with pytest.raises(WebhookVerificationError, match="does not match"):
        Webhook.construct_event(BODY.replace(b"1}", b"2}"), {"Weft-Signature": header}, SECRET)


def test_an_old_timestamp_is_refused_even_with_a_valid_mac() -> None:
    old = int(time.time()) - 301
    header = server_sign(SECRET, BODY, old)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook.construct_event(BODY, {"Weft-Signature": header}, SECRET)
    event = Webhook.construct_event(BODY, {"Weft-Signature": header}, SECRET, tolerance=600)
    assert event.id == "evt_1"
