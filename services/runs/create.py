"""CreateRun: validate, reserve credits, then commit run + event + job + idempotency
record in one transaction (the outbox relay publishes after the commit)."""

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import asyncpg
import grpc

from services.runs import repository as repo
from services.runs.events import insert_created_run
from services.runs.group_commit import CreationBatcher
from services.runs.params import file_values, validate_values
from weft.billing.v1 import billing_pb2, billing_pb2_grpc
from weft.storage.v1 import storage_pb2, storage_pb2_grpc
from weftcore.batching import Batcher
from weftcore.context import request_id_var
from weftcore.errors import FailedPrecondition, InvalidArgument, NotFound, WeftError, from_rpc_error
from weftcore.events import RunEvent
from weftcore.ids import new_id
from weftcore.tokens import estimate_tokens

log = logging.getLogger(__name__)

MAX_INPUT_CHARS = 50_000
MAX_ATTACHMENTS = 20
PAID_PLANS = frozenset({"pro", "team", "enterprise"})
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class Caller:
    user_id: str
    team_id: str
    plan: str
    allowlist: tuple[str, ...] | None  # None: every workflow

    @property
    def account_id(self) -> str:
        """Who pays and whose rate limit counts: the team, else the user."""
        return self.team_id or self.user_id


@dataclass(frozen=True)
class IdempotencyRequest:
    key: str
    method: str
    path: str
    request_hash: str


@dataclass(frozen=True)
class StoredResponse:
    http_status: int
    body_json: str


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_seconds: int


class IdempotencyStore(Protocol):
    """The auth engineer's idempotency records, used inside the creating transaction."""

    async def begin(
        self, conn: asyncpg.Connection, account_id: str, req: IdempotencyRequest
    ) -> StoredResponse | None:
        """None: proceed (key now held). A StoredResponse: replay it. Conflicts raise."""

    async def complete(
        self,
        conn: asyncpg.Connection,
        account_id: str,
        req: IdempotencyRequest,
        response: StoredResponse,
    ) -> None: ...


class RateLimiter(Protocol):
    """Counts run creations. One that also has `ticket(account_id, plan)` and
    `settle(ticket, row)` (services.runs.ratelimit.PgRateLimiter) is taken inside the
    statement that inserts the run."""

    async def take(self, conn: asyncpg.Connection, account_id: str, plan: str) -> RateLimitState:
        """Count one run; ResourceExhausted (RATE_LIMITED) when over the limit."""


@dataclass(frozen=True)
class CreateRunInput:
    workflow_id: str
    input_text: str
    params: Any
    attachment_ids: list[str]
    webhook_url: str
    idempotency: IdempotencyRequest | None


@dataclass
class CreateRunOutput:
    http_status: int
    body_json: str
    replayed: bool
    rate_limit: RateLimitState | None = None
    run_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def check_webhook_url(url: str) -> str | None:
    """https anywhere, or http to localhost (development); 400 otherwise."""
    if not url:
        return None
    bad = InvalidArgument(
        "webhook_url must be an https URL (or http://localhost in development).",
        param="webhook_url",
    )
    if len(url) > 2048:
        raise bad
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise bad from None
    if not host:
        raise bad
    if parts.scheme == "https" or (parts.scheme == "http" and host in _LOCAL_HOSTS):
        return url
    raise bad


def check_input_text(text: str) -> None:
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidArgument(
            f"input_text is over the {MAX_INPUT_CHARS:,}-character limit ({len(text):,}).",
            param="input_text",
        )


class RunCreator:
    """The CreateRun use case; its collaborators are small interfaces (fakes in tests)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        billing: billing_pb2_grpc.BillingServiceStub,
        storage: storage_pb2_grpc.StorageServiceStub,
        idempotency: IdempotencyStore,
        rate_limiter: RateLimiter,
        after_commit: Callable[[], None] = lambda: None,
        batcher: CreationBatcher | None = None,
        reserve_batcher: Batcher[billing_pb2.ReserveRequest, billing_pb2.Reservation] | None = None,
    ) -> None:
        self._pool = pool
        self._billing = billing
        self._storage = storage
        self._idempotency = idempotency
        self._rate_limiter = rate_limiter
        # Wakes the outbox relay of this process at once (NOTIFY would, a hop later).
        self._after_commit = after_commit
        # Group commit for creations without an Idempotency-Key (the common case).
        self._batcher = batcher
        # Reserve, with concurrent creations sharing ReserveMany calls.
        self._reserve_batcher = reserve_batcher

    async def check_attachments(
        self, caller: Caller, ids: list[str]
    ) -> list[storage_pb2.Attachment]:
        """Each id must be an attachment of the caller (404 naming it otherwise); answers
        them in order."""
        if not ids:
            return []
        if caller.plan not in PAID_PLANS:
            raise WeftError("Attachments need a paid plan.", code="PAID_PLAN_REQUIRED")
        if len(ids) > MAX_ATTACHMENTS:
            raise InvalidArgument(
                f"At most {MAX_ATTACHMENTS} attachments per run.", param="attachment_ids"
            )

        async def one(i: int, att_id: str) -> storage_pb2.Attachment:
            try:
                attachment: storage_pb2.Attachment = await self._storage.GetAttachment(
                    storage_pb2.GetAttachmentRequest(
                        attachment_id=att_id, owner_user_id=caller.user_id
                    ),
                    timeout=10,
                )
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                if err.code == "NOT_FOUND":
                    raise NotFound(
                        f"No such attachment: {att_id}.", param=f"attachment_ids[{i}]"
                    ) from None
                raise err from None
            return attachment

        return list(await asyncio.gather(*(one(i, a) for i, a in enumerate(ids))))

    def _estimate(
        self,
        definition: dict[str, Any],
        inp: CreateRunInput,
        params: Any,
        attachments: list[storage_pb2.Attachment],
    ) -> list[billing_pb2.StageEstimate]:
        llm_stages = [s for s in definition["stages"] if s["type"] == "llm"]
        if not llm_stages:
            return []
        # Attachments count with the estimate storage made of their text at upload:
        # reading the texts back could overflow a gRPC reply (five 2M-character files).
        prompt_tokens = estimate_tokens(inp.input_text + json.dumps(params)) + sum(
            a.text_tokens for a in attachments
        )
        return [
            billing_pb2.StageEstimate(
                stage=s["id"],
                model=s["model"],
                input_tokens=prompt_tokens + estimate_tokens(s["prompt"] + s.get("system", "")),
                max_output_tokens=int(s.get("max_tokens", 1024)),
            )
            for s in llm_stages
        ]

    async def create(
        self, caller: Caller, workflow: asyncpg.Record, inp: CreateRunInput
    ) -> CreateRunOutput:
        """Validate, reserve, commit. The workflow is the caller-visible current version."""
        definition: dict[str, Any] = workflow["definition"]
        check_input_text(inp.input_text)
        params = validate_values(definition.get("fields", []), inp.params, "params")
        attachment_ids = list(
            dict.fromkeys([*inp.attachment_ids, *file_values(definition.get("fields", []), params)])
        )
        webhook_url = check_webhook_url(inp.webhook_url)
        attachments = await self.check_attachments(caller, attachment_ids)
        if inp.idempotency is not None:
            replay = await self._peek(caller, inp.idempotency)
            if replay is not None:
                return replay
        run_id = new_id("run")
        stages = self._estimate(definition, inp, params, attachments)
        reserved = await self._reserve(caller, run_id, stages)
        new = repo.NewRun(
            id=run_id,
            workflow_id=workflow["id"],
            workflow_version=workflow["current_version"],
            user_id=caller.user_id,
            team_id=caller.team_id,
            account_id=caller.account_id,
            input_text=inp.input_text,
            params=params,
            attachment_ids=attachment_ids,
            webhook_url=webhook_url,
            holds_reservation=reserved,
        )
        try:
            out = await self._commit(caller, new, inp.idempotency)
        except BaseException:
            if reserved:
                await asyncio.shield(self._release(run_id))
            raise
        if out.replayed and reserved:
            await asyncio.shield(self._release(run_id))
        return out

    async def _reserve(
        self, caller: Caller, run_id: str, stages: list[billing_pb2.StageEstimate]
    ) -> bool:
        """Holds the run's estimate in billing; False when there is nothing to hold.

        A run with no priced stage on a user's own account can cost nothing and needs
        no allocation check, so it skips billing: no reservation, no capture, no ledger
        entries of zero. A team member's free run still asks (NO_ALLOCATION applies)."""
        if not stages and not caller.team_id:
            if caller.plan not in PAID_PLANS:
                raise FailedPrecondition("API access needs a paid plan.", code="PAID_PLAN_REQUIRED")
            return False
        payer = billing_pb2.Payer(user_id=caller.user_id, team_id=caller.team_id, plan=caller.plan)
        reserve = billing_pb2.ReserveRequest(
            run_id=run_id, payer=payer, stages=stages, request_id=request_id_var.get()
        )
        try:
            if self._reserve_batcher is not None:
                await self._reserve_batcher.call(reserve)
            else:
                await self._billing.Reserve(reserve, timeout=10)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return True

    async def _peek(self, caller: Caller, idem: IdempotencyRequest) -> CreateRunOutput | None:
        peek = getattr(self._idempotency, "peek", None)
        if peek is None:
            return None
        async with self._pool.acquire() as conn:
            stored = await peek(conn, caller.user_id, idem)
        if stored is None:
            return None
        return CreateRunOutput(stored.http_status, stored.body_json, replayed=True)

    async def _commit(
        self, caller: Caller, new: repo.NewRun, idem: IdempotencyRequest | None
    ) -> CreateRunOutput:
        limiter: Any = self._rate_limiter
        if idem is None and self._batcher is not None and hasattr(limiter, "ticket"):
            tk = limiter.ticket(caller.account_id, caller.plan)
            event, row = await self._batcher.insert(vars(new).copy(), tk.args())
            rate = limiter.settle(tk, row)
            self._after_commit()
            body = _created_body(new, event.created_at)
            return CreateRunOutput(201, body, replayed=False, rate_limit=rate, run_id=new.id)
        async with self._pool.acquire() as conn:
            if idem is None and hasattr(self._rate_limiter, "ticket"):
                # One statement is its own transaction: the account's rate lock is held
                # only inside the server, never across a round trip.
                event, rate = await self._insert(conn, caller, new)
                body = _created_body(new, event.created_at)
            else:
                async with conn.transaction():
                    if idem is not None:
                        stored = await self._idempotency.begin(conn, caller.user_id, idem)
                        if stored is not None:
                            return CreateRunOutput(
                                stored.http_status, stored.body_json, replayed=True
                            )
                    event, rate = await self._insert(conn, caller, new)
                    body = _created_body(new, event.created_at)
                    if idem is not None:
                        response = StoredResponse(201, body)
                        await self._idempotency.complete(conn, caller.user_id, idem, response)
        self._after_commit()
        return CreateRunOutput(201, body, replayed=False, rate_limit=rate, run_id=new.id)

    async def _insert(
        self, conn: asyncpg.Connection, caller: Caller, new: repo.NewRun
    ) -> tuple[RunEvent, RateLimitState]:
        """The run, its event and job, and the rate take (ResourceExhausted when full)."""
        limiter: Any = self._rate_limiter
        if hasattr(limiter, "ticket"):
            tk = limiter.ticket(caller.account_id, caller.plan)
            event, row = await insert_created_run(conn, vars(new).copy(), tk.args())
            assert row is not None
            return event, limiter.settle(tk, row)
        event, _ = await insert_created_run(conn, vars(new).copy())
        # Last before the commit: it serialises one account's creations until then.
        return event, await limiter.take(conn, caller.account_id, caller.plan)

    async def _release(self, run_id: str) -> None:
        try:
            await self._billing.Release(billing_pb2.ReleaseRequest(run_id=run_id), timeout=10)
        except Exception:
            # Left open, the reservation only holds credits; billing expires stale ones.
            log.exception("billing release failed", extra={"run_id": run_id})


def _created_body(new: repo.NewRun, created_at: str) -> str:
    return json.dumps(
        {
            "data": {
                "id": new.id,
                "workflow_id": new.workflow_id,
                "status": "pending",
                "created_at": created_at,
            }
        },
        separators=(",", ":"),
    )


class NoIdempotency:
    """Stands in until the idempotency store is wired: every request proceeds."""

    async def begin(
        self, conn: asyncpg.Connection, account_id: str, req: IdempotencyRequest
    ) -> StoredResponse | None:
        return None

    async def complete(
        self,
        conn: asyncpg.Connection,
        account_id: str,
        req: IdempotencyRequest,
        response: StoredResponse,
    ) -> None:
        return None


class NoRateLimit:
    async def take(self, conn: asyncpg.Connection, account_id: str, plan: str) -> RateLimitState:
        return RateLimitState(limit=0, remaining=0, reset_seconds=0)
