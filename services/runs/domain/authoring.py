"""Workflows as a product: who may see and edit one, its draft, its immutable versions,
and which definition a run executes.

- Visible: the operator's catalog (no owner) to everyone; an owned workflow to its owner,
  and for a team's workflow to every member. To anyone else it does not exist (404),
  and a key's allowlist narrows what it sees, as for runs.
- Editable: by its owner (a team's: by its admins and members; viewers read and run
  it; only admins archive it); the catalog only by operators (weft-admin, from files).
- A draft is edited (PATCH merges, PUT replaces, both validated whole) and published
  into the next version, which never changes again. Runs record the version they ran:
  the latest published by default, one pinned by number, or the draft (owner only).
"""

import dataclasses
import time
from typing import Any

import asyncpg

from services.runs.domain.create import Caller, RunTarget
from services.runs.domain.endpoint import Endpoint, endpoint_settings
from services.runs.domain.workflows import parse_text, validate_definition
from services.runs.store import workflows as store
from weftcore.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from weftcore.ids import new_id

# How stale another replica's view of a changed workflow may be (CreateRun reads one
# per run: a moment's cache saves the round trip).
CACHE_SECONDS = 2.0
DRAFT = "draft"
EDITOR_ROLES = ("admin", "member")


def _not_found(ref: str) -> NotFound:
    return NotFound(f"No such workflow: {ref}.")


def is_catalog(row: asyncpg.Record) -> bool:
    return row["owner_user_id"] is None and row["owner_team_id"] is None


def may_see(caller: Caller | None, row: asyncpg.Record) -> bool:
    """Operators (no caller) see everything; a key its account's and the catalog, within
    its allowlist."""
    if caller is None:
        return True
    if not caller.may_use(row["id"]):
        return False
    return is_catalog(row) or owns(caller, row)


def owns(caller: Caller, row: asyncpg.Record) -> bool:
    """The caller's own workflow, or their team's (whatever their role)."""
    if row["owner_user_id"] is not None and row["owner_user_id"] == caller.user_id:
        return True
    return bool(row["owner_team_id"]) and row["owner_team_id"] == caller.team_id


def may_edit(caller: Caller, row: asyncpg.Record) -> bool:
    """Its owner; for a team's workflow, the team's admins and members (not viewers)."""
    if not owns(caller, row):
        return False
    return not row["owner_team_id"] or caller.team_role in EDITOR_ROLES


def may_archive(caller: Caller, row: asyncpg.Record) -> bool:
    """Its owner; for a team's workflow, the team's admins."""
    return may_edit(caller, row) and (not row["owner_team_id"] or caller.team_role == "admin")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: objects merge key by key, null deletes, the rest
    replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


class Workflows:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[str, tuple[float, asyncpg.Record]] = {}

    # ---- reading ---------------------------------------------------------------------

    async def get(self, caller: Caller | None, ref: str) -> asyncpg.Record:
        """By id or slug; 404 for a workflow the caller may not see."""
        row = await self._cached(ref) if ref else None
        if row is None or not may_see(caller, row):
            raise _not_found(ref)
        return row

    async def list_visible(
        self, caller: Caller | None, limit: int, starting_after: str
    ) -> tuple[list[asyncpg.Record], bool]:
        allowlist = None if caller is None or caller.allowlist is None else list(caller.allowlist)
        rows = await store.list_workflows(
            self._pool,
            None if caller is None else caller.user_id,
            "" if caller is None else caller.team_id,
            allowlist,
            limit + 1,
            starting_after,
        )
        return rows[:limit], len(rows) > limit

    async def versions(self, caller: Caller, workflow_id: str) -> list[asyncpg.Record]:
        row = await self.get(caller, workflow_id)
        return await store.list_versions(self._pool, row["id"])

    async def version(self, caller: Caller, workflow_id: str, number: int) -> asyncpg.Record:
        row = await self.get(caller, workflow_id)
        found = await store.get_version(self._pool, row["id"], number) if number > 0 else None
        if found is None:
            raise NotFound(f"Workflow {row['id']} has no version {number}.")
        return found

    async def endpoint(self, slug: str) -> Endpoint:
        """A published endpoint for a keyless call: who pays for it and its settings
        (NotFound for no such endpoint, one never published, or an archived one). The
        catalog's workflows have nobody to bill: their endpoints always need a key."""
        row = await self._cached(slug) if slug and not slug.startswith("wf_") else None
        if row is None or row["current_version"] < 1 or row["archived_at"] is not None:
            raise NotFound(f"No endpoint {slug}.")
        settings = endpoint_settings(dict(row["definition"]))
        payer = row["owner_user_id"] or (row["published_by"] if row["owner_team_id"] else None)
        if payer is None:
            settings = dataclasses.replace(settings, auth="required")
        return Endpoint(
            workflow_id=row["id"],
            slug=row["slug"],
            settings=settings,
            payer_user_id=payer or "",
            payer_team_id=row["owner_team_id"] or "",
        )

    async def run_target(self, caller: Caller, ref: str, version: str) -> RunTarget:
        """The definition a new run of `ref` executes: `version` "" (the version the
        caller's key pins, else the latest published), a published version's number, or
        "draft" (its owner's test run)."""
        row = await self.get(caller, ref)
        if caller.keyless:
            return self._keyless_target(row, version)
        if not version and row["id"] in caller.version_pins:
            version = str(caller.version_pins[row["id"]])
        if row["archived_at"] is not None:
            raise Conflict(
                f"Workflow {row['id']} is archived: it takes no new runs.", code="WORKFLOW_ARCHIVED"
            )
        if version == DRAFT:
            if not may_edit(caller, row):
                raise InvalidArgument(
                    "Only the workflow's owner may run its draft.", param="version"
                )
            if row["draft"] is not None:
                pinned = await store.pin_draft(self._pool, row)
                return RunTarget(row["id"], pinned, dict(row["draft"]))
            version = ""  # no draft: it is the latest version
        if not version:
            if row["current_version"] < 1:
                raise Conflict(
                    f"Workflow {row['id']} has no published version yet: publish it, or run"
                    ' its draft with "version": "draft".',
                    code="WORKFLOW_NOT_PUBLISHED",
                )
            return RunTarget(row["id"], row["current_version"], dict(row["definition"]))
        number = int(version) if version.isdigit() else 0
        found = await store.get_version(self._pool, row["id"], number) if number > 0 else None
        if found is None:
            raise InvalidArgument(
                f"Workflow {row['id']} has no version {version}.", param="version"
            )
        return RunTarget(row["id"], number, dict(found["definition"]))

    @staticmethod
    def _keyless_target(row: asyncpg.Record, version: str) -> RunTarget:
        """A keyless call runs the latest published version of a public endpoint."""
        if version:
            raise InvalidArgument(
                "A call without an API key runs the endpoint's latest published version:"
                " send a key to choose another.",
                param="version",
            )
        if row["current_version"] < 1 or row["archived_at"] is not None:
            raise _not_found(row["slug"])
        definition = dict(row["definition"])
        if not endpoint_settings(definition).public:
            raise _not_found(row["slug"])
        return RunTarget(row["id"], row["current_version"], definition)

    # ---- authoring -------------------------------------------------------------------

    async def apply(
        self, text: str, owner_user_id: str = "", owner_team_id: str = ""
    ) -> store.AppliedWorkflow:
        """Operators: a definition from a file (created, or a new version), in the
        catalog unless an owner is given."""
        if owner_user_id and owner_team_id:
            raise InvalidArgument("A workflow has one owner: a user or a team.", param="owner")
        definition = validate_definition(parse_text(text))
        try:
            applied = await store.apply_workflow(
                self._pool, definition, owner_user_id, owner_team_id
            )
        except store.SlugTaken as exc:
            raise _slug_taken(exc) from None
        self._cache.clear()
        return applied

    async def create(self, caller: Caller, text: str) -> asyncpg.Record:
        """A new draft owned by the caller's team (else the caller), from a definition
        in JSON or YAML. Its id is assigned here."""
        doc = parse_text(text)
        if isinstance(doc, dict):
            doc = {**doc, "id": new_id("wf")}
        definition = validate_definition(doc)
        try:
            return await self._create(caller, definition)
        except store.SlugTaken as exc:
            raise _slug_taken(exc) from None

    async def edit(
        self, caller: Caller, workflow_id: str, text: str, merge: bool
    ) -> asyncpg.Record:
        """The draft replaced by the definition in `text` (PUT), or merged with it as a
        JSON Merge Patch (PATCH); validated whole either way."""
        row = await self._editable(caller, workflow_id)
        doc = parse_text(text)
        if merge:
            if not isinstance(doc, dict):
                raise InvalidArgument("A merge patch must be an object.", param="definition")
            doc = merge_patch(_current_draft(row), doc)
        if isinstance(doc, dict):
            if doc.get("id", row["id"]) != row["id"]:
                raise InvalidArgument("A workflow's id cannot change.", param="id")
            doc = {**doc, "id": row["id"]}
        definition = validate_definition(doc)
        try:
            saved = await store.save_draft(self._pool, row["id"], definition)
        except store.SlugTaken as exc:
            raise _slug_taken(exc) from None
        self._cache.clear()
        return saved

    async def publish(self, caller: Caller, workflow_id: str, note: str) -> asyncpg.Record:
        """The draft frozen into the next version."""
        row = await self._editable(caller, workflow_id)
        if row["draft"] is None:
            raise Conflict(
                f"Workflow {row['id']} has no changes to publish since version"
                f" {row['current_version']}.",
                code="NOTHING_TO_PUBLISH",
            )
        if len(note) > 2000:
            raise InvalidArgument("note is at most 2,000 characters.", param="note")
        version = await store.publish(
            self._pool, row["id"], dict(row["draft"]), caller.user_id, note
        )
        self._cache.clear()
        return version

    async def archive(self, caller: Caller | None, workflow_id: str) -> asyncpg.Record:
        """Its owner's (or, without a caller, an operator's) archive."""
        if caller is None:
            row = await self.get(None, workflow_id)
        else:
            row = await self._editable(caller, workflow_id)
            if not may_archive(caller, row):
                raise PermissionDenied(
                    "Only the team's admins may archive its workflows.",
                    code="WORKFLOW_READ_ONLY",
                )
        archived = await store.archive(self._pool, row["id"])
        self._cache.clear()
        return archived

    async def delete(self, workflow_id: str) -> None:
        """Operators: a workflow that never ran goes; one with runs is archived instead."""
        row = await self.get(None, workflow_id)
        if not await store.delete_workflow(self._pool, row["id"]):
            raise FailedPrecondition(
                f"Workflow {row['id']} has runs: archive it instead (its runs stay readable)."
            )
        self._cache.clear()

    async def duplicate(
        self, caller: Caller, workflow_id: str, slug: str, name: str
    ) -> asyncpg.Record:
        """A new draft, owned by the caller, from a workflow they may see (its draft if
        they may edit it, else its latest version)."""
        row = await self.get(caller, workflow_id)
        source = _current_draft(row) if may_edit(caller, row) else row["definition"]
        if source is None:
            raise Conflict(
                f"Workflow {row['id']} has no published version to copy.",
                code="WORKFLOW_NOT_PUBLISHED",
            )
        copy = {**source, "slug": slug, "name": name or f"{source['name']} (copy)"}
        definition = validate_definition({**copy, "id": new_id("wf")})
        try:
            return await self._create(caller, definition)
        except store.SlugTaken as exc:
            raise _slug_taken(exc) from None

    async def _create(self, caller: Caller, definition: dict[str, Any]) -> asyncpg.Record:
        """A new workflow owned by the caller's team, else the caller."""
        if caller.team_id and caller.team_role not in EDITOR_ROLES:
            raise PermissionDenied(
                "Viewers of a team read and run its workflows; an admin or member creates them.",
                code="WORKFLOW_READ_ONLY",
            )
        owner_user = "" if caller.team_id else caller.user_id
        return await store.create_workflow(self._pool, definition, owner_user, caller.team_id)

    async def _editable(self, caller: Caller, workflow_id: str) -> asyncpg.Record:
        # Fresh, not cached: an edit must start from the latest draft.
        row = await store.get_workflow(self._pool, workflow_id) if workflow_id else None
        if row is None or not may_see(caller, row):
            raise _not_found(workflow_id)
        if is_catalog(row):
            raise PermissionDenied(
                "The catalog's workflows are managed by the operator; duplicate it to edit a copy.",
                code="WORKFLOW_READ_ONLY",
            )
        if not may_edit(caller, row):
            raise PermissionDenied(
                "Viewers of a team read and run its workflows; an admin or member changes them.",
                code="WORKFLOW_READ_ONLY",
            )
        return row

    async def _cached(self, ref: str) -> asyncpg.Record | None:
        now = time.monotonic()
        hit = self._cache.get(ref)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        row = await store.get_workflow(self._pool, ref)
        if row is not None:
            if len(self._cache) > 1000:
                self._cache.clear()
            self._cache[ref] = (now, row)
        return row


def _current_draft(row: asyncpg.Record) -> dict[str, Any] | None:
    """The definition being edited: the draft, else the latest version."""
    draft = row["draft"] if row["draft"] is not None else row["definition"]
    return None if draft is None else dict(draft)


def _slug_taken(exc: store.SlugTaken) -> Conflict:
    return Conflict(str(exc), code="SLUG_TAKEN", param="slug")
