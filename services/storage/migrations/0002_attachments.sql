-- Attachment metadata; the bytes and the extracted text live in S3.
CREATE TABLE attachments (
    id                text PRIMARY KEY,
    owner_user_id     text NOT NULL,
    original_filename text NOT NULL,
    kind              text NOT NULL,
    content_type      text NOT NULL,
    byte_size         bigint NOT NULL,
    sha256            text NOT NULL,
    object_key        text NOT NULL,
    text_key          text,
    text_chars        bigint NOT NULL DEFAULT 0,
    extraction_status text NOT NULL
        CHECK (extraction_status IN ('extracted', 'failed', 'not_applicable')),
    extraction_error  text,
    row_count         bigint NOT NULL DEFAULT 0,
    truncated         boolean NOT NULL DEFAULT false,
    metadata          jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX attachments_owner_idx ON attachments (owner_user_id, id);
