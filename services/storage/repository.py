"""SQL for attachment metadata (the storage schema)."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg

_COLUMNS = (
    "id, owner_user_id, original_filename, kind, content_type, byte_size, sha256, object_key,"
    " text_key, text_chars, text_tokens, extraction_status, extraction_error, row_count,"
    " truncated, metadata, created_at"
)


@dataclass
class AttachmentRecord:
    id: str
    owner_user_id: str
    original_filename: str
    kind: str
    content_type: str
    byte_size: int
    sha256: str
    object_key: str
    text_key: str | None
    text_chars: int
    text_tokens: int  # estimated prompt tokens of the text (weftcore.tokens)
    extraction_status: str
    extraction_error: str | None
    row_count: int
    truncated: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


class AttachmentRepository(Protocol):
    async def insert(self, record: AttachmentRecord) -> AttachmentRecord: ...
    async def get(self, attachment_id: str, owner_user_id: str) -> AttachmentRecord | None: ...
    async def get_many(
        self, attachment_ids: list[str], owner_user_id: str
    ) -> list[AttachmentRecord]: ...
    async def delete(self, attachment_id: str, owner_user_id: str) -> AttachmentRecord | None: ...


class PgAttachmentRepository:
    """AttachmentRepository on asyncpg; every read is scoped to the owner."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert(self, record: AttachmentRecord) -> AttachmentRecord:
        row = await self.pool.fetchrow(
            f"INSERT INTO attachments ({_COLUMNS}) VALUES"
            " ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,now())"
            f" RETURNING {_COLUMNS}",
            record.id,
            record.owner_user_id,
            record.original_filename,
            record.kind,
            record.content_type,
            record.byte_size,
            record.sha256,
            record.object_key,
            record.text_key,
            record.text_chars,
            record.text_tokens,
            record.extraction_status,
            record.extraction_error,
            record.row_count,
            record.truncated,
            record.metadata,
        )
        assert row is not None
        return AttachmentRecord(**dict(row))

    async def get(self, attachment_id: str, owner_user_id: str) -> AttachmentRecord | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM attachments WHERE id = $1 AND owner_user_id = $2",
            attachment_id,
            owner_user_id,
        )
        return AttachmentRecord(**dict(row)) if row else None

    async def get_many(
        self, attachment_ids: list[str], owner_user_id: str
    ) -> list[AttachmentRecord]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM attachments WHERE id = ANY($1::text[]) AND owner_user_id = $2",
            attachment_ids,
            owner_user_id,
        )
        return [AttachmentRecord(**dict(r)) for r in rows]

    async def delete(self, attachment_id: str, owner_user_id: str) -> AttachmentRecord | None:
        """Removes the owner's row; answers it (for its object keys), None if not theirs."""
        row = await self.pool.fetchrow(
            f"DELETE FROM attachments WHERE id = $1 AND owner_user_id = $2 RETURNING {_COLUMNS}",
            attachment_id,
            owner_user_id,
        )
        return AttachmentRecord(**dict(row)) if row else None
