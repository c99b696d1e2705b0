"""Attachments: streamed upload (detect, cap, hash, store, extract) and reads by owner."""

import asyncio
import contextlib
import hashlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.storage.config import StorageConfig
from services.storage.detect import SNIFF_BYTES, cap_for, detect, sanitize_filename
from services.storage.errors import PayloadTooLarge
from services.storage.extract import ExtractResult, Limits
from services.storage.metrics import observe_extraction
from services.storage.repository import AttachmentRecord, AttachmentRepository
from services.storage.s3 import ObjectStore
from services.storage.spooled_upload import SpooledUpload
from weftcore.errors import InvalidArgument, NotFound, Unavailable
from weftcore.ids import has_prefix, new_id

log = logging.getLogger(__name__)


class Extractor(Protocol):
    """Extracts `path`, writing the text to `text_path` (result.text stays empty), in
    turn with the other files of `account` (the uploader)."""

    async def extract(
        self, account: str, path: Path, kind: str, limits: Limits, text_path: Path
    ) -> ExtractResult: ...


@dataclass(frozen=True)
class UploadHeader:
    owner_user_id: str
    filename: str
    content_type: str = ""
    declared_size: int = 0  # 0 when unknown


@dataclass(frozen=True)
class AttachmentText:
    attachment: AttachmentRecord
    text: str
    truncated: bool


def _mib(n: int) -> str:
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n:,}-byte"


def truncate_text(text: str, max_chars: int) -> tuple[str, bool]:
    """`text` cut to at most `max_chars` characters, the cut said in a closing note."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text, False
    note = f"\n\n[Truncated: showing the first {{n:,}} of {len(text):,} characters.]"
    keep = max(0, max_chars - len(note) - 8)
    return text[:keep] + note.format(n=keep), True


class StorageService:
    def __init__(
        self,
        config: StorageConfig,
        store: ObjectStore,
        repo: AttachmentRepository,
        extractor: Extractor,
        spool_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.repo = repo
        self.extractor = extractor
        self.spool_dir = spool_dir
        self.limits = Limits(
            max_rows=config.max_rows,
            max_chars=config.max_text_chars,
            max_json_depth=config.max_json_depth,
            max_zip_bytes=config.max_zip_bytes,
            max_zip_ratio=config.max_zip_ratio,
        )

    def _too_large(self, cap: int, kind: str | None = None) -> PayloadTooLarge:
        what = f"{kind.upper()} files" if kind else "uploads"
        return PayloadTooLarge(f"The file is over the {_mib(cap)} limit for {what}.")

    async def upload(self, header: UploadHeader, chunks: AsyncIterator[bytes]) -> AttachmentRecord:
        """Stores the streamed file and its extracted text; 413/415 as soon as known."""
        if not has_prefix(header.owner_user_id, "usr"):
            raise InvalidArgument("owner_user_id is required.", param="owner_user_id")
        if header.declared_size > self.config.max_upload_bytes:
            raise self._too_large(self.config.max_upload_bytes)
        filename = sanitize_filename(header.filename)
        head = bytearray()
        async for chunk in chunks:
            head += chunk
            if len(head) >= SNIFF_BYTES:
                break
        detected = detect(bytes(head[:SNIFF_BYTES]), filename)
        cap = cap_for(
            detected.kind, self.config.max_upload_bytes, self.config.max_table_upload_bytes
        )
        if header.declared_size > cap:
            raise self._too_large(cap, detected.kind)

        att_id = new_id("att")
        object_key = f"attachments/{att_id}/original"
        with tempfile.TemporaryDirectory(prefix="weft-upload-", dir=self.spool_dir) as tmp:
            # Parsers such as openpyxl insist on a matching extension.
            spool = Path(tmp) / f"upload.{detected.kind}"
            text_path = Path(tmp) / "text.txt"
            text_key = f"attachments/{att_id}/text.txt"
            size, sha256, extraction = await self._stream(
                header.owner_user_id,
                object_key,
                detected.content_type,
                bytes(head),
                chunks,
                cap,
                detected.kind,
                spool,
                text_path,
                text_key,
            )
            try:
                result, stored_text_key = await extraction

                record = AttachmentRecord(
                    id=att_id,
                    owner_user_id=header.owner_user_id,
                    original_filename=filename,
                    kind=detected.kind,
                    content_type=detected.content_type,
                    byte_size=size,
                    sha256=sha256,
                    object_key=object_key,
                    text_key=stored_text_key,
                    text_chars=result.text_chars,
                    text_tokens=result.text_tokens,
                    extraction_status=result.status,
                    extraction_error=result.error or None,
                    row_count=result.row_count,
                    truncated=result.truncated,
                    metadata=result.metadata,
                )
                stored = await self.repo.insert(record)
            except BaseException:
                # Cancelling stops an extraction that has not stored its text yet; one
                # already storing it finishes first, so the removal below comes last.
                extraction.cancel()
                with contextlib.suppress(BaseException):
                    await extraction
                await self._remove(object_key, text_key)
                raise
        log.info(
            "attachment stored",
            extra={
                "attachment_id": att_id,
                "kind": detected.kind,
                "bytes": size,
                "extraction_status": result.status,
            },
        )
        return stored

    async def _stream(
        self,
        owner_user_id: str,
        key: str,
        content_type: str,
        head: bytes,
        rest: AsyncIterator[bytes],
        cap: int,
        kind: str,
        spool: Path,
        text_path: Path,
        text_key: str,
    ) -> tuple[int, str, "asyncio.Task[tuple[ExtractResult, str | None]]"]:
        """Streams head + rest to the spool file and from it to S3; returns (size,
        sha256 hex, the extraction task). Parts go to S3 as soon as the spool holds
        them; extraction and storing its text start as soon as the spool is complete,
        so they overlap the last parts."""
        hasher = hashlib.sha256()
        size = 0
        extraction: asyncio.Task[tuple[ExtractResult, str | None]] | None = None
        spool_file = spool.open("wb")
        upload = SpooledUpload(self.store, key, content_type, spool)

        def feed(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size > cap:
                raise self._too_large(cap, kind)
            hasher.update(chunk)
            spool_file.write(chunk)  # page cache; cheaper than another thread hop
            if upload.due(size):
                spool_file.flush()  # the part's sender reads the file, not our buffer
                upload.grown(size)

        try:
            if head:
                feed(head)
            async for chunk in rest:
                feed(chunk)
            spool_file.close()
            extraction = asyncio.create_task(
                self._extract(owner_user_id, spool, kind, text_path, text_key)
            )
            try:
                await upload.finish(size)
            except Exception as exc:
                log.error("S3 upload failed", exc_info=exc)
                raise Unavailable("Object storage is unavailable. Retry later.") from None
        except BaseException:
            spool_file.close()
            await upload.abort()
            if extraction is not None:
                with contextlib.suppress(BaseException):
                    await extraction
            await self._remove(key, text_key)
            raise
        return size, hasher.hexdigest(), extraction

    async def _extract(
        self, owner_user_id: str, spool: Path, kind: str, text_path: Path, text_key: str
    ) -> tuple[ExtractResult, str | None]:
        """Extracts the spooled file and stores its text under `text_key`; answers the
        result and the key (None when there is no text)."""
        started = time.perf_counter()
        result = await self.extractor.extract(owner_user_id, spool, kind, self.limits, text_path)
        observe_extraction(kind, result.status, time.perf_counter() - started)
        if not (result.text_chars and text_path.exists()):
            return result, None
        put = asyncio.ensure_future(
            self.store.put_file(text_key, text_path, "text/plain; charset=utf-8")
        )
        try:
            await asyncio.shield(put)
        except asyncio.CancelledError:
            # The PUT goes on in its thread: let it land before the caller removes it.
            with contextlib.suppress(Exception):
                await put
            raise
        return result, text_key

    async def _remove(self, *keys: str) -> None:
        for key in keys:
            try:
                await asyncio.shield(self.store.remove(key))
            except BaseException:
                # Best effort: a leftover partial object is garbage, not a leak of data.
                log.warning("could not remove object", extra={"key": key})

    async def get(self, attachment_id: str, owner_user_id: str) -> AttachmentRecord:
        """The attachment if `owner_user_id` uploaded it; NOT_FOUND otherwise."""
        record = None
        if has_prefix(attachment_id, "att"):
            record = await self.repo.get(attachment_id, owner_user_id)
        if record is None:
            raise NotFound(f"No attachment {attachment_id!r}.", param="attachment_id")
        return record

    async def delete(self, attachment_id: str, owner_user_id: str) -> None:
        """Removes the owner's attachment (row first, so nobody reads a half-removed one,
        then its objects, best effort); NOT_FOUND if it is not theirs."""
        record = None
        if has_prefix(attachment_id, "att"):
            record = await self.repo.delete(attachment_id, owner_user_id)
        if record is None:
            raise NotFound(f"No attachment {attachment_id!r}.", param="attachment_id")
        await self._remove(*[k for k in (record.object_key, record.text_key) if k])

    async def read_text(
        self, attachment_ids: list[str], owner_user_id: str, max_chars: int
    ) -> list[AttachmentText]:
        """Extracted texts in the order asked, each cut to `max_chars` (0 = whole)."""
        wanted = list(dict.fromkeys(attachment_ids))
        valid = [a for a in wanted if has_prefix(a, "att")]
        records = {r.id: r for r in await self.repo.get_many(valid, owner_user_id)}
        missing = [a for a in wanted if a not in records]
        if missing:
            raise NotFound(f"No attachment {missing[0]!r}.", param="attachment_ids")
        texts = []
        for attachment_id in wanted:
            record = records[attachment_id]
            if record.extraction_status == "failed":
                text = f"[Text extraction failed: {record.extraction_error}]"
            elif record.text_key:
                try:
                    text = (await self.store.get_bytes(record.text_key)).decode("utf-8")
                except Exception:
                    log.exception("could not read extracted text", extra={"id": record.id})
                    raise Unavailable("Object storage is unavailable. Retry later.") from None
            else:
                text = "[No text could be extracted from this file.]"
            cut, truncated = truncate_text(text, max_chars)
            texts.append(AttachmentText(record, cut, truncated or record.truncated))
        return texts
