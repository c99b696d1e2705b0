"""CreateRun: validate, claim the Idempotency-Key (if any), reserve credits, then commit
run + event + job + idempotency answer in one transaction (the outbox relay publishes
after the commit)."""

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import grpc

from services.runs.domain.concurrency import DEFAULT_PRIORITY, run_limits
from services.runs.domain.endpoint import EndpointSettings, endpoint_settings
from services.runs.domain.params import check_files, file_values, validate_values
from services.runs.domain.ssrf import SSRFPolicy, SSRFRefused
from services.runs.domain.timeouts import DEFAULT_MAX_SECONDS, run_timeout
from services.runs.domain.transitions import Created, RunState, StageRow, advance
from services.runs.domain.webhook_url import CREATION_RESOLVE_SECONDS, check_webhook_url
from services.runs.store.writer import RateTake, RunWriter, write
from weft.billing.v1 import billing_pb2, billing_pb2_grpc
from weft.storage.v1 import storage_pb2, storage_pb2_grpc
from weftcore.batching import Batcher
from weftcore.context import request_id_var
from weftcore.errors import InvalidArgument, NotFound, from_rpc_error
from weftcore.ids import iso, new_id, utcnow
from weftcore.plans import require_paid_plan
from weftcore.tokens import estimate_tokens

log = logging.getLogger(__name__)

MAX_INPUT_CHARS = 50_000
MAX_ATTACHMENTS = 20


@dataclass(frozen=True)
class Caller:
    user_id: str
    team_id: str
    plan: str
    allowlist: tuple[str, ...] | None  # None: every workflow
    # The key's pins: the version its runs of a workflow use unless a call names one.
    version_pins: Mapping[str, int] = dataclasses.field(default_factory=dict, hash=False)
    # A keyless call of a public endpoint (the caller is the workflow's payer): the
    # client's address. "" for every call with a key.
    client_ip: str = ""
    team_role: str = ""  # on a team: admin | member | viewer

    @property
    def keyless(self) -> bool:
        return bool(self.client_ip)

    @property
    def idempotency_scope(self) -> str:
        """Whose keys an Idempotency-Key is among: the user's, or for keyless calls the
        client address's at the payer's (strangers must not replay each other's runs)."""
        return f"{self.user_id} ip:{self.client_ip}" if self.client_ip else self.user_id

    @property
    def account_id(self) -> str:
        """Who pays and whose rate limit counts: the team, else the user."""
        return self.team_id or self.user_id

    def may_use(self, workflow_id: str) -> bool:
        """Whether the key's allowlist (if any) admits the workflow."""
        return self.allowlist is None or workflow_id in self.allowlist

    def can_see_run(self, user_id: str, workflow_id: str) -> bool:
        """A run is visible to its owner through a key that may use its workflow; to
        anyone else it does not exist."""
        return user_id == self.user_id and self.may_use(workflow_id)


@dataclass(frozen=True)
class RunTarget:
    """What a new run executes (domain/authoring.py): the workflow, the version the run
    records (> 0: published; < 0: a draft revision it pinned), that definition."""

    workflow_id: str
    version: int
    definition: dict[str, Any]


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
    """The idempotency records (services/runs/store/idempotency.py)."""

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
    ) -> None:
        """Store the answer, inside the transaction that did the work; Conflict
        (IDEMPOTENCY_IN_FLIGHT) when the key is no longer held."""

    async def forget(
        self, conn: asyncpg.Connection, account_id: str, req: IdempotencyRequest
    ) -> None:
        """Release a held key without an answer (the request did no work)."""


class RateTicket(Protocol):
    """One take of the rate limit, fixed before the statement that takes it."""

    def args(self) -> RateTake:
        """The take's arguments in the creating statement (ratelimit.TAKE_SQL's)."""


class RateLimiter(Protocol):
    """Counts run creations. A take is fixed as a ticket before the statement that
    inserts the run, which embeds it (services.runs.store.ratelimit: PgRateLimiter)."""

    def ticket(self, account_id: str, plan: str) -> RateTicket:
        """The arguments of one take for the account now."""

    def settle(self, tk: Any, row: Mapping[str, Any]) -> RateLimitState:
        """The state after the embedded take answered `row`; ResourceExhausted
        (RATE_LIMITED) when it took nothing (then nothing was inserted)."""

    async def current(self, conn: asyncpg.Connection, account_id: str, plan: str) -> RateLimitState:
        """The state now, counting nothing (the headers of a replayed answer)."""

    async def take_per_minute(
        self, conn: asyncpg.Connection, key: str, limit: int, where: str
    ) -> RateLimitState:
        """One take of a per-minute limit on `key` (a public endpoint's keyless calls);
        ResourceExhausted (RATE_LIMITED, naming `where`) when it is used up."""


@dataclass(frozen=True)
class CreateRunInput:
    workflow_id: str
    input_text: str
    params: Any
    attachment_ids: list[str]
    webhook_url: str
    idempotency: IdempotencyRequest | None
    version: str = ""  # "", a published version's number, or "draft" (authoring.run_target)
    rerun: "Rerun | None" = None
    timeout_seconds: int | None = None  # None: the workflow's (domain/timeouts.py)
    priority: int = DEFAULT_PRIORITY  # 0-9: its turn among runs waiting for a slot


@dataclass(frozen=True)
class Rerun:
    """A new run of a finished one: what it keeps of it (input and params unless given
    anew), and the stage it executes from (the outputs before it are copied)."""

    run_id: str
    from_stage: str
    input_given: bool
    params_given: bool


@dataclass(frozen=True)
class CreatedRun:
    """What creation answers of the new run (the replay of a key answers the original)."""

    id: str
    workflow_id: str
    status: str
    created_at: str

    def to_json(self) -> str:
        """The stored answer of an idempotent creation (services/runs/store/idempotency.py)."""
        return json.dumps({"data": vars(self)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "CreatedRun":
        data = json.loads(text)["data"]
        return cls(data["id"], data["workflow_id"], data["status"], data["created_at"])


@dataclass(frozen=True)
class CreateRunOutput:
    run: CreatedRun
    replayed: bool
    rate_limit: RateLimitState | None = None


async def check_webhook(url: str, policy: SSRFPolicy) -> str | None:
    """The run's webhook URL, or None; 400 naming `webhook_url` when the rule that every
    delivery applies (services/runs/domain/webhook_url.py) refuses it."""
    if not url:
        return None
    try:
        await check_webhook_url(url, policy, resolve_timeout=CREATION_RESOLVE_SECONDS)
    except SSRFRefused as exc:
        raise InvalidArgument(f"webhook_url refused: {exc.message}.", param="webhook_url") from None
    return url


def check_input_text(text: str) -> None:
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidArgument(
            f"input_text is over the {MAX_INPUT_CHARS:,}-character limit ({len(text):,}).",
            param="input_text",
        )


def estimate_stages(
    definition: dict[str, Any],
    input_text: str,
    params: Any,
    attachments: list[storage_pb2.Attachment],
) -> list[billing_pb2.StageEstimate]:
    """What each priced (llm) stage of a run may cost at most: its prompt's tokens and
    its output cap, for billing to reserve."""
    llm_stages = [s for s in definition["stages"] if s["type"] == "llm"]
    if not llm_stages:
        return []
    # Attachments count with the estimate storage made of their text at upload:
    # reading the texts back could overflow a gRPC reply (five 2M-character files).
    prompt_tokens = estimate_tokens(input_text + json.dumps(params)) + sum(
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


class RunCreator:
    """The CreateRun use case; its collaborators are small interfaces (fakes in tests)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        billing: billing_pb2_grpc.BillingServiceStub,
        storage: storage_pb2_grpc.StorageServiceStub,
        idempotency: IdempotencyStore,
        rate_limiter: RateLimiter,
        writer: RunWriter,
        after_commit: Callable[[], None] = lambda: None,
        reserve_batcher: Batcher[billing_pb2.ReserveRequest, billing_pb2.Reservation] | None = None,
        webhook_policy: SSRFPolicy | None = None,
        max_timeout_seconds: int = DEFAULT_MAX_SECONDS,
        account_concurrency: Mapping[str, int] | None = None,
    ) -> None:
        self._pool = pool
        self._billing = billing
        self._storage = storage
        self._idempotency = idempotency
        self._rate_limiter = rate_limiter
        # Wakes the outbox relay of this process at once (NOTIFY would, a hop later).
        self._after_commit = after_commit
        # Group commit for creations without an Idempotency-Key (the common case).
        self._writer = writer
        # Reserve, with concurrent creations sharing ReserveMany calls.
        self._reserve_batcher = reserve_batcher
        # What webhook deliveries may reach (WebhookConfig.policy): refused here already.
        self._webhook_policy = webhook_policy or SSRFPolicy()
        # No run lasts longer (WEFT_RUN_TIMEOUT_MAX_SECONDS).
        self._max_timeout_seconds = max_timeout_seconds
        # Runs of an account holding a slot at once, by plan (domain/concurrency.py).
        self._account_concurrency = dict(account_concurrency or {})

    async def check_attachments(
        self, caller: Caller, ids: list[str]
    ) -> list[storage_pb2.Attachment]:
        """Each id must be an attachment of the caller (404 naming it otherwise); answers
        them in order."""
        if not ids:
            return []
        require_paid_plan(caller.plan)
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

    async def create(
        self,
        caller: Caller,
        workflow: RunTarget,
        inp: CreateRunInput,
        inherited: tuple[StageRow, ...] = (),
    ) -> CreateRunOutput:
        """Validate, claim the key, reserve, commit. The workflow is the caller-visible
        current version."""
        definition = workflow.definition
        check_input_text(inp.input_text)
        timeout = run_timeout(definition, inp.timeout_seconds, self._max_timeout_seconds)
        inp = dataclasses.replace(inp, timeout_seconds=timeout)
        params = validate_values(definition.get("fields", []), inp.params, "params")
        attachment_ids = list(
            dict.fromkeys([*inp.attachment_ids, *file_values(definition.get("fields", []), params)])
        )
        webhook_url = await check_webhook(inp.webhook_url, self._webhook_policy)
        attachments = await self.check_attachments(caller, attachment_ids)
        check_files(definition.get("fields", []), params, {a.id: a for a in attachments})
        inp = dataclasses.replace(inp, attachment_ids=attachment_ids)
        idem = inp.idempotency
        if idem is None:
            return await self._reserve_and_commit(
                caller, workflow, inp, params, attachments, webhook_url, inherited
            )
        # The key first: a concurrent retry must get the replay or IDEMPOTENCY_IN_FLIGHT,
        # never a refusal of its own (e.g. 402 because the first one holds the credits).
        replay = await self._claim(caller, idem)
        if replay is not None:
            return replay
        try:
            return await self._reserve_and_commit(
                caller, workflow, inp, params, attachments, webhook_url, inherited
            )
        except BaseException:
            # No run was written: the key must not stay claimed (every retry would be
            # IDEMPOTENCY_IN_FLIGHT) nor remember a refusal that did no work. After a
            # commit this is a no-op: only an in-flight claim is forgotten.
            await asyncio.shield(self._unclaim(caller, idem))
            raise

    async def _reserve_and_commit(
        self,
        caller: Caller,
        workflow: RunTarget,
        inp: CreateRunInput,
        params: Any,
        attachments: list[storage_pb2.Attachment],
        webhook_url: str | None,
        inherited: tuple[StageRow, ...] = (),
    ) -> CreateRunOutput:
        run_id = new_id("run")
        copied = {row.stage_id for row in inherited}  # a rerun pays for what it executes
        stages = [
            s
            for s in estimate_stages(workflow.definition, inp.input_text, params, attachments)
            if s.stage not in copied
        ]
        keyless = endpoint_settings(workflow.definition) if caller.keyless else None
        client_rate = await self._take_keyless(caller, workflow, keyless) if keyless else None
        cap = keyless.max_cost_micros if keyless else 0
        reserved = await self.reserve(caller, run_id, stages, max_amount=cap)
        workflow_limit, account_limit = run_limits(
            workflow.definition, caller.plan, self._account_concurrency
        )
        new = RunState(
            id=run_id,
            workflow_id=workflow.workflow_id,
            workflow_version=workflow.version,
            user_id=caller.user_id,
            team_id=caller.team_id,
            account_id=caller.account_id,
            input_text=inp.input_text,
            params=params,
            attachment_ids=inp.attachment_ids,
            webhook_url=webhook_url,
            holds_reservation=reserved,
            created_at=utcnow(),
            rerun_of=inp.rerun.run_id if inp.rerun else None,
            timeout_seconds=inp.timeout_seconds,
            priority=inp.priority,
            concurrency_limit=workflow_limit,
            account_concurrency_limit=account_limit,
        )
        try:
            output = await self._commit(caller, new, inp.idempotency, inherited)
        except BaseException:
            if reserved:
                await asyncio.shield(self._release(run_id))
            raise
        # A keyless client sees its own limit, not how much of the payer's is left.
        if client_rate is None:
            return output
        return dataclasses.replace(output, rate_limit=client_rate)

    async def _take_keyless(
        self, caller: Caller, workflow: RunTarget, settings: EndpointSettings
    ) -> RateLimitState:
        """A keyless call counts against its client address's limit at the endpoint and
        the endpoint's own, per rolling minute (RATE_LIMITED past either); attempts that
        fail later still count, as they would against abuse."""
        per_ip = f"ip:{workflow.workflow_id}:{caller.client_ip}"
        async with self._pool.acquire() as conn:
            state = await self._rate_limiter.take_per_minute(
                conn, per_ip, settings.per_ip_per_minute, "from your address at this endpoint"
            )
            await self._rate_limiter.take_per_minute(
                conn, f"endpoint:{workflow.workflow_id}", settings.per_minute, "at this endpoint"
            )
        return state

    async def reserve(
        self,
        caller: Caller,
        run_id: str,
        stages: list[billing_pb2.StageEstimate],
        max_amount: int = 0,
    ) -> bool:
        """Holds the run's estimate in billing; False when there is nothing to hold.

        A run with no priced stage on a user's own account can cost nothing and needs
        no allocation check, so it skips billing: no reservation, no capture, no ledger
        entries of zero. A team member's free run still asks (NO_ALLOCATION applies)."""
        if not stages and not caller.team_id:
            require_paid_plan(caller.plan)
            return False
        payer = billing_pb2.Payer(user_id=caller.user_id, team_id=caller.team_id, plan=caller.plan)
        reserve = billing_pb2.ReserveRequest(
            run_id=run_id,
            payer=payer,
            stages=stages,
            request_id=request_id_var.get(),
            max_amount_micros=max_amount,
        )
        try:
            if self._reserve_batcher is not None:
                await self._reserve_batcher.call(reserve)
            else:
                await self._billing.Reserve(reserve, timeout=10)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        return True

    async def _claim(self, caller: Caller, idem: IdempotencyRequest) -> CreateRunOutput | None:
        """Hold the key (committed, so concurrent retries see it in flight), or answer
        the stored response with the rate limit as it is now (a replay takes nothing)."""
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                stored = await self._idempotency.begin(conn, caller.idempotency_scope, idem)
            if stored is None:
                return None
            rate = await self._rate_limiter.current(conn, caller.account_id, caller.plan)
        replayed = CreatedRun.from_json(stored.body_json)
        return CreateRunOutput(replayed, replayed=True, rate_limit=rate)

    async def _unclaim(self, caller: Caller, idem: IdempotencyRequest) -> None:
        try:
            async with self._pool.acquire() as conn:
                await self._idempotency.forget(conn, caller.idempotency_scope, idem)
        except Exception:
            # Left in flight, the key is taken over by a retry after the lease.
            log.exception("idempotency key not released", extra={"key": idem.key})

    async def _commit(
        self,
        caller: Caller,
        new: RunState,
        idem: IdempotencyRequest | None,
        inherited: tuple[StageRow, ...] = (),
    ) -> CreateRunOutput:
        """The run, its event and first job, with the rate take in the same statement
        (nothing is written when the account is over its limit); with a key, its stored
        answer too, in the same transaction."""
        limiter = self._rate_limiter
        tk = limiter.ticket(caller.account_id, caller.plan)
        change = advance(new, [Created(inherited)], new.created_at)
        created = CreatedRun(new.id, new.workflow_id, "pending", iso(new.created_at))
        if idem is None:
            # Shared with the creations of the moment: one statement, its own transaction.
            written = await self._writer.write(change, tk.args())
            assert written.take is not None
            rate = limiter.settle(tk, written.take)
        else:
            async with self._pool.acquire() as conn, conn.transaction():
                [written] = await write(conn, [change], [tk.args()])
                assert written.take is not None
                rate = limiter.settle(tk, written.take)  # over the limit: rolled back here
                stored = StoredResponse(201, created.to_json())
                await self._idempotency.complete(conn, caller.idempotency_scope, idem, stored)
        self._after_commit()
        return CreateRunOutput(created, replayed=False, rate_limit=rate)

    async def _release(self, run_id: str) -> None:
        try:
            await self._billing.Release(billing_pb2.ReleaseRequest(run_id=run_id), timeout=10)
        except Exception:
            # Left open, the reservation only holds credits; billing expires stale ones.
            log.exception("billing release failed", extra={"run_id": run_id})
