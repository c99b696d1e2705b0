"""Webhook deliveries: signed POSTs of run events, retried with exponential backoff.

Rows in `webhook_deliveries` are queued by the statement that inserts their event, in
the same statement (services/runs/store/writer.py). A `WebhookDispatcher`
task in every runs API process claims due rows with `FOR UPDATE SKIP LOCKED` and pushes
their `next_attempt_at` past the HTTP timeout (a lease), so replicas never send one
delivery concurrently; a replica that dies mid-send leaves the lease to expire and
another one retries (at-least-once).

Signature: `Weft-Signature: t=<unix>,v1=<hex hmac-sha256(secret, "<t>.<body>")>`, keyed
with the account's secret (`whsec_...`, created on first use).

Before each attempt the URL is checked with the rule it passed at creation
(services/runs/domain/webhook_url.py), and the connection goes only to addresses the guard let
through. A delivery the guard refuses fails at once, for good: retrying would not change
the answer (a host that does not resolve, though, is retried).
"""

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import asyncpg

from services.runs.domain.ssrf import GuardedResolver, ResolutionFailed, SSRFPolicy, SSRFRefused
from services.runs.domain.webhook_url import check_webhook_url
from services.runs.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_GAVE_UP, webhook_outcome
from weftcore import tracing
from weftcore.config import ConfigError, env_bool, env_float, env_list

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Weft-Signature"
EVENT_HEADER = "Weft-Event"
DELIVERY_HEADER = "Weft-Delivery"
USER_AGENT = "Weft-Webhooks/1"
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class WebhookConfig:
    """Delivery settings (env WEFT_WEBHOOK_*); `policy` is also the creation-time rule."""

    timeout_seconds: float = 10.0
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 3600.0
    retry_window: timedelta = timedelta(hours=24)
    poll_seconds: float = 1.0
    batch_size: int = 50
    public_base_url: str = ""
    policy: SSRFPolicy = field(default_factory=SSRFPolicy)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "WebhookConfig":
        # Same destinations as http stages unless set separately (tests: 127.0.0.1).
        allowlist = env_list("WEFT_WEBHOOK_ALLOWLIST", "", env) or env_list(
            "WEFT_HTTP_STAGE_ALLOWLIST", "", env
        )
        return _checked(
            cls(
                timeout_seconds=env_float("WEFT_WEBHOOK_TIMEOUT_SECONDS", 10.0, env),
                backoff_base_seconds=env_float("WEFT_WEBHOOK_BACKOFF_BASE_SECONDS", 1.0, env),
                backoff_cap_seconds=env_float("WEFT_WEBHOOK_BACKOFF_CAP_SECONDS", 3600.0, env),
                retry_window=timedelta(hours=env_float("WEFT_WEBHOOK_RETRY_HOURS", 24.0, env)),
                public_base_url=(os.environ if env is None else env).get(
                    "WEFT_PUBLIC_BASE_URL", ""
                ),
                policy=SSRFPolicy(
                    allow_private=env_bool("WEFT_WEBHOOK_ALLOW_PRIVATE", False, env),
                    allowlist=tuple(h.lower() for h in allowlist),
                    # Development: receivers on this machine, over plain http too.
                    allow_loopback=env_bool("WEFT_WEBHOOK_ALLOW_LOOPBACK", False, env),
                ),
            )
        )


def _checked(config: WebhookConfig) -> WebhookConfig:
    """Fail fast on values that would time out every attempt, retry in a tight loop or
    go back in time."""
    for name, value in (
        ("WEFT_WEBHOOK_TIMEOUT_SECONDS", config.timeout_seconds),
        ("WEFT_WEBHOOK_BACKOFF_BASE_SECONDS", config.backoff_base_seconds),
        ("WEFT_WEBHOOK_BACKOFF_CAP_SECONDS", config.backoff_cap_seconds),
    ):
        if value <= 0:
            raise ConfigError(f"environment variable {name} must be positive, got {value}")
    if config.retry_window < timedelta(0):
        raise ConfigError("environment variable WEFT_WEBHOOK_RETRY_HOURS must not be negative")
    return config


def backoff_seconds(attempt: int, base: float = 1.0, cap: float = 3600.0) -> float:
    """Delay after failed attempt number `attempt` (1-based): base, 2*base, 4*base ... cap."""
    return float(min(cap, base * 2 ** min(max(attempt - 1, 0), 40)))


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The Weft-Signature header value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, tolerance: float = 300.0) -> bool:
    """True when `header` is a valid signature of `body` within `tolerance` seconds
    (the receiver's side; used by tests and documented for integrators)."""
    try:
        items = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(items["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, items.get("v1", ""))


def new_secret() -> str:
    return "whsec_" + secrets.token_hex(32)


async def get_or_create_secret(
    conn: asyncpg.Connection | asyncpg.Pool, account_id: str
) -> asyncpg.Record:
    """The account's secret row (account_id, secret, created_at), created on first use."""
    await conn.execute(
        "INSERT INTO webhook_secrets (account_id, secret) VALUES ($1, $2)"
        " ON CONFLICT (account_id) DO NOTHING",
        account_id,
        new_secret(),
    )
    row = await conn.fetchrow("SELECT * FROM webhook_secrets WHERE account_id = $1", account_id)
    assert row is not None
    return row


def event_body(event_id: str, event_payload: Mapping[str, Any], base_url: str) -> bytes:
    """The JSON POSTed: {id, type, created_at, data: run snapshot (with links)}."""
    run = dict(event_payload["run"])
    if base_url:
        base = base_url.rstrip("/")
        run["links"] = {
            "self": f"{base}/api/v1/workflow-runs/{run['id']}",
            "app": f"{base}/app/workflows/{run['workflow_id']}/runs/{run['id']}",
        }
    doc = {
        "id": event_id,
        "type": event_payload["type"],
        "created_at": event_payload["created_at"],
        "data": run,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


async def list_deliveries(
    pool: asyncpg.Pool, run_id: str
) -> list[tuple[asyncpg.Record, list[asyncpg.Record]]]:
    """The run's deliveries, oldest first, each with its attempts."""
    rows = await pool.fetch(
        "SELECT * FROM webhook_deliveries WHERE run_id = $1 ORDER BY created_at, id", run_id
    )
    attempts = await pool.fetch(
        "SELECT * FROM webhook_attempts WHERE delivery_id = ANY($1) ORDER BY attempt",
        [r["id"] for r in rows],
    )
    by_delivery: dict[str, list[asyncpg.Record]] = {}
    for a in attempts:
        by_delivery.setdefault(a["delivery_id"], []).append(a)
    return [(r, by_delivery.get(r["id"], [])) for r in rows]


_CLAIM = """
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
WHERE d.id IN (
    SELECT id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING d.*, (SELECT payload FROM run_events e WHERE e.event_id = d.id) AS event
"""
_ATTEMPT = """
INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, duration_ms)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
"""
_DELIVERED = """
UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(),
    last_status_code = $2, last_error = '' WHERE id = $1
"""
_RETRY = """
UPDATE webhook_deliveries SET status = $2, last_status_code = $3, last_error = $4,
    next_attempt_at = now() + make_interval(secs => $5) WHERE id = $1
"""


@dataclass(frozen=True)
class AttemptResult:
    status_code: int  # 0: no HTTP answer
    error: str
    duration_ms: int
    # Refused by the guard: no later attempt can succeed, the delivery fails now.
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


class WebhookDispatcher:
    """The delivery loop; `wake()` when deliveries may have been queued."""

    def __init__(self, pool: asyncpg.Pool, config: WebhookConfig) -> None:
        self._pool = pool
        self._config = config
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._secrets: dict[str, str] = {}

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled (a weftcore.background task); the HTTP session lives
        as long as the loop."""
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._config.policy))
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds),
        ) as session:
            self._session = session
            try:
                await self._deliver_forever()
            finally:
                self._session = None

    async def _secret(self, account_id: str) -> str:
        cached = self._secrets.get(account_id)
        if cached is None:
            cached = str((await get_or_create_secret(self._pool, account_id))["secret"])
            self._secrets[account_id] = cached  # secrets are never rotated in place
        return cached

    async def deliver_due(self) -> int:
        """Claim and send one batch of due deliveries; returns how many were attempted."""
        lease = self._config.timeout_seconds + 30
        rows = await self._pool.fetch(_CLAIM, self._config.batch_size, lease)
        await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    async def _deliver(self, row: asyncpg.Record) -> None:
        try:
            with tracing.consumer_span(
                "webhook delivery", {"traceparent": row["traceparent"] or ""}
            ):
                result = await self._attempt(row)
        except Exception as exc:  # never lose the loop over one delivery
            log.exception("webhook attempt crashed", extra={"delivery_id": row["id"]})
            result = AttemptResult(0, f"internal error: {type(exc).__name__}", 0)
        await self._record(row, result)

    async def _attempt(self, row: asyncpg.Record) -> AttemptResult:
        assert self._session is not None
        if row["event"] is None:
            return AttemptResult(0, "event not found", 0)
        body = event_body(row["id"], row["event"], self._config.public_base_url)
        secret = await self._secret(row["account_id"])
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(secret, body, int(time.time())),
            EVENT_HEADER: row["event_type"],
            DELIVERY_HEADER: row["id"],
        }
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            await check_webhook_url(row["url"], self._config.policy)
            async with self._session.post(
                row["url"], data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                error = "" if 200 <= response.status < 300 else f"HTTP {response.status}"
                return AttemptResult(response.status, error, elapsed())
        except ResolutionFailed as exc:
            return AttemptResult(0, exc.message, elapsed())
        except SSRFRefused as exc:
            return _refused(exc, elapsed())
        except TimeoutError:
            return AttemptResult(0, f"timeout after {self._config.timeout_seconds:g} s", elapsed())
        except aiohttp.ClientError as exc:
            if isinstance(exc.__cause__, SSRFRefused):  # the guard, at connect time
                return _refused(exc.__cause__, elapsed())
            return AttemptResult(0, f"{type(exc).__name__}: {exc}", elapsed())

    async def _record(self, row: asyncpg.Record, result: AttemptResult) -> None:
        error = result.error[:MAX_ERROR_CHARS]
        attempt = int(row["attempts"])
        WEBHOOK_ATTEMPTS.labels(webhook_outcome(result.status_code, result.permanent)).inc()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                _ATTEMPT, row["id"], attempt, result.status_code, error, result.duration_ms
            )
            if result.ok:
                await conn.execute(_DELIVERED, row["id"], result.status_code)
                return
            delay = backoff_seconds(
                attempt, self._config.backoff_base_seconds, self._config.backoff_cap_seconds
            )
            age = await conn.fetchval(
                "SELECT now() - created_at FROM webhook_deliveries WHERE id = $1", row["id"]
            )
            expired = age is not None and age >= self._config.retry_window
            status = "failed" if expired or result.permanent else "pending"
            await conn.execute(_RETRY, row["id"], status, result.status_code, error, delay)
        if status == "failed":
            WEBHOOK_GAVE_UP.inc()
            log.warning(
                "webhook delivery gave up",
                extra={"delivery_id": row["id"], "run_id": row["run_id"], "error": error},
            )

    async def _deliver_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                self._wake.clear()
                attempted = await self.deliver_due()
                delay = 0.5
                if attempted >= self._config.batch_size:
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), self._config.poll_seconds)
                except TimeoutError:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook loop failed; will retry", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def _refused(exc: SSRFRefused, duration_ms: int) -> AttemptResult:
    return AttemptResult(0, f"refused: webhook URL not allowed: {exc.message}", duration_ms, True)
