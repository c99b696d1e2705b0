// Everything the client throws derives from WeftError. An answer from the API is a
// WeftAPIError (a subclass per status), carrying the error envelope's code, message,
// param and request id; the rest say the server could not be reached or did not answer.
import type { components } from "./schema.js";

export type ErrorCode = components["schemas"]["ErrorCode"];
export type ErrorBody = components["schemas"]["ErrorBody"];

export class WeftError extends Error {
  override name = "WeftError";
}

export class WeftAPIError extends WeftError {
  override name = "WeftAPIError";
  readonly status: number;
  /** The envelope's `code` (UPPER_SNAKE, stable), or `HTTP_<status>` without an envelope. */
  readonly code: ErrorCode | string;
  readonly param: string | undefined;
  readonly requestId: string | undefined;
  readonly headers: Headers;
  /** The envelope's `error` object as sent (e.g. `limit` of a 429). */
  readonly body: Partial<ErrorBody>;

  constructor(status: number, body: Partial<ErrorBody>, headers: Headers) {
    const code = body.code ?? `HTTP_${status}`;
    const requestId = body.request_id ?? headers.get("x-request-id") ?? undefined;
    let text = `${status} ${code}: ${body.message ?? "(no message)"}`;
    if (body.param) text += ` (param: ${body.param})`;
    if (requestId) text += ` [request_id: ${requestId}]`;
    super(text);
    this.status = status;
    this.code = code;
    this.param = body.param;
    this.requestId = requestId;
    this.headers = headers;
    this.body = body;
  }
}

export class BadRequestError extends WeftAPIError {
  override name = "BadRequestError";
}
export class AuthenticationError extends WeftAPIError {
  override name = "AuthenticationError";
}
export class PaymentRequiredError extends WeftAPIError {
  override name = "PaymentRequiredError";
}
export class PermissionDeniedError extends WeftAPIError {
  override name = "PermissionDeniedError";
}
export class NotFoundError extends WeftAPIError {
  override name = "NotFoundError";
}
export class ConflictError extends WeftAPIError {
  override name = "ConflictError";
}
export class PayloadTooLargeError extends WeftAPIError {
  override name = "PayloadTooLargeError";
}
export class UnsupportedMediaTypeError extends WeftAPIError {
  override name = "UnsupportedMediaTypeError";
}
export class RateLimitError extends WeftAPIError {
  override name = "RateLimitError";
  /** Seconds until a retry may succeed (Retry-After), when the server said. */
  get retryAfter(): number | undefined {
    return retryAfterSeconds(this.headers);
  }
}
export class InternalServerError extends WeftAPIError {
  override name = "InternalServerError";
}
export class ServiceUnavailableError extends InternalServerError {
  override name = "ServiceUnavailableError";
}

/** The server cannot be reached (refused, reset, DNS): `cannot reach <url>: <why>`. */
export class WeftConnectionError extends WeftError {
  override name = "WeftConnectionError";
}

/** No answer within the request's timeout. */
export class WeftTimeoutError extends WeftError {
  override name = "WeftTimeoutError";
}

/** `runs.wait` gave up; the run goes on. `run` is its last snapshot. */
export class RunTimeoutError extends WeftTimeoutError {
  override name = "RunTimeoutError";
  readonly run: components["schemas"]["Run"];
  constructor(run: components["schemas"]["Run"], timeoutMs: number) {
    super(
      `run ${run.id} is still ${run.status} after ${timeoutMs / 1000} s; it continues on the server`,
    );
    this.run = run;
  }
}

const BY_STATUS: Record<number, typeof WeftAPIError> = {
  400: BadRequestError,
  401: AuthenticationError,
  402: PaymentRequiredError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: PayloadTooLargeError,
  415: UnsupportedMediaTypeError,
  429: RateLimitError,
  503: ServiceUnavailableError,
};

/** The error for a non-2xx answer, from its envelope when it has one. */
export function apiError(status: number, payload: unknown, headers: Headers): WeftAPIError {
  const envelope = payload as { error?: Partial<ErrorBody> } | null;
  const body = envelope && typeof envelope === "object" && envelope.error ? envelope.error : {};
  const Kind = BY_STATUS[status] ?? (status >= 500 ? InternalServerError : WeftAPIError);
  return new Kind(status, body, headers);
}

export function retryAfterSeconds(headers: Headers): number | undefined {
  const raw = headers.get("retry-after");
  if (raw === null) return undefined;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000);
}
