import { createHash } from "node:crypto";

export interface FilePart {
  field: string;
  filename: string;
  contentType: string;
  data: Buffer;
}

function quoted(value: string): string {
  return value.replace(/["\r\n\\]/g, "_");
}

/**
 * A multipart/form-data body built in memory. The boundary is derived from the content,
 * so a retry sends the very same bytes and an Idempotency-Key (bound to the body) replays.
 */
export function multipartBody(
  fields: Record<string, string>,
  files: FilePart[],
): { body: Buffer; contentType: string } {
  const digest = createHash("sha256");
  for (const [name, value] of Object.entries(fields)) digest.update(`${name}=${value}\0`);
  for (const file of files) digest.update(file.field).update(file.filename).update(file.data);
  const boundary = `----weft-n8n-${digest.digest("hex").slice(0, 32)}`;
  const chunks: Buffer[] = [];
  for (const [name, value] of Object.entries(fields)) {
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${quoted(name)}"\r\n\r\n${value}\r\n`,
      ),
    );
  }
  for (const file of files) {
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${quoted(file.field)}"; ` +
          `filename="${quoted(file.filename)}"\r\nContent-Type: ${file.contentType}\r\n\r\n`,
      ),
      file.data,
      Buffer.from("\r\n"),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}
