-- Estimated prompt tokens of each attachment's extracted text (weftcore.tokens), counted
-- at upload so a run's cost estimate sums them instead of reading every text back.
ALTER TABLE attachments ADD COLUMN text_tokens bigint NOT NULL DEFAULT 0;

-- Rows from before: their text is in S3, only its length here. Assume the worst case
-- of 4 UTF-8 bytes per character; the estimate is meant to err on the high side.
UPDATE attachments SET text_tokens = ceil(text_chars * 4 / 3.0)::bigint + 16 WHERE text_chars > 0;
