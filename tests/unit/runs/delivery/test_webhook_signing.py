"""Webhook signatures, backoff and body (services/runs/delivery/webhooks.py), no network."""

import hashlib
import hmac
import json
import time

from services.runs.delivery.webhooks import (
    WebhookConfig,
    backoff_seconds,
    event_body,
    new_secret,
    sign,
    verify,
)
from services.runs.domain.ssrf import SSRFPolicy


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    header = sign("whsec_abc", body, 1700000000)
    expected = hmac.new(b"whsec_abc", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_verify_accepts_fresh_signature_and_refuses_tampering() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret) > 40
    body = b'{"a":1}'
    now = int(time.time())
    assert verify(secret, body, sign(secret, body, now))
    assert not verify(secret, b'{"a":2}', sign(secret, body, now))
    assert not verify("whsec_other", body, sign(secret, body, now))
    assert not verify(secret, body, sign(secret, body, now - 3600))  # replayed later
    assert not verify(secret, body, "garbage")


def test_backoff_doubles_from_one_second_up_to_an_hour() -> None:
    assert [backoff_seconds(n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert backoff_seconds(13) == 3600
    assert backoff_seconds(10_000) == 3600
    # Retrying for 24 h at the cap takes well over 20 attempts: the window, not a
    # count, decides when to give up.
    assert sum(backoff_seconds(n) for n in range(1, 30)) < 24 * 3600


def test_event_body_carries_stable_id_type_and_snapshot_with_links() -> None:
    payload = {
        "id": "evt_x",
        "type": "run.completed",
        "created_at": "2025-01-01T00:00:00Z",
        "run": {"id": "run_1", "workflow_id": "wf_1", "status": "completed"},
    }
    doc = json.loads(event_body("evt_x", payload, "https://weft.example/"))
    assert doc["id"] == "evt_x" and doc["type"] == "run.completed"
    assert doc["created_at"] == "2025-01-01T00:00:00Z"
    assert doc["data"]["status"] == "completed"
    assert doc["data"]["links"]["self"] == "https://weft.example/api/v1/workflow-runs/run_1"


def test_config_allows_private_destinations_only_when_configured() -> None:
    assert WebhookConfig.from_env({}).policy == SSRFPolicy(False, ())
    cfg = WebhookConfig.from_env({"WEFT_HTTP_STAGE_ALLOWLIST": "127.0.0.1"})
    assert cfg.policy.host_allowed("127.0.0.1") and not cfg.policy.host_allowed("10.0.0.1")
    own = WebhookConfig.from_env(
        {"WEFT_WEBHOOK_ALLOWLIST": "hooks.internal", "WEFT_HTTP_STAGE_ALLOWLIST": "127.0.0.1"}
    )
    assert own.policy.allowlist == ("hooks.internal",)
    assert WebhookConfig.from_env({"WEFT_WEBHOOK_ALLOW_PRIVATE": "true"}).policy.allow_private
