// One request with its retries: headers, timeout, backoff and error mapping. Every call
// of the client goes through `Transport.send`.
import {
  apiError,
  retryAfterSeconds,
  WeftAPIError,
  WeftConnectionError,
  WeftError,
  WeftTimeoutError,
} from "./errors.js";
import { VERSION } from "./version.js";

export const DEFAULT_BASE_URL = "http://127.0.0.1:8080";
export const DEFAULT_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_RETRIES = 3;
// A Retry-After longer than this (an exhausted hourly run limit) is not slept through.
const MAX_RETRY_AFTER_SECONDS = 60;
const MAX_BACKOFF_MS = 8_000;

export interface ClientOptions {
  /** A `wft_live_...` key; default: the WEFT_API_KEY environment variable. */
  apiKey?: string;
  /** Default: WEFT_BASE_URL, else http://127.0.0.1:8080. */
  baseUrl?: string;
  /** Per request, in milliseconds (default 60 000). */
  timeoutMs?: number;
  /** Retries of a failed request (default 3). */
  maxRetries?: number;
  /** Another fetch (tests, proxies); default: the global one. */
  fetch?: typeof fetch;
  /** Sent with every request. */
  headers?: Record<string, string>;
}

export interface RequestOptions {
  timeoutMs?: number;
  maxRetries?: number;
  /** For creating calls: the same key on every attempt (default: a fresh UUID). */
  idempotencyKey?: string;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

/** What every answer carries besides its data. */
export interface ResponseInfo {
  status: number;
  headers: Headers;
  requestId: string | undefined;
  /** The answer replays the first request with this Idempotency-Key. */
  idempotentReplayed: boolean;
  rateLimitRemaining: number | undefined;
}

export interface WithResponse<T> {
  data: T;
  response: ResponseInfo;
}

/**
 * "idempotent": safe to repeat after any failure (reads, creations with a key);
 * "once": repeated only when the server certainly did no work (refused connection,
 * 429, 503).
 */
export type RetryPolicy = "idempotent" | "once";

export interface Call {
  method: "GET" | "POST";
  path: string;
  query?: Record<string, string | number | undefined>;
  json?: unknown;
  form?: FormData;
  retry: RetryPolicy;
  /** Creating calls send an Idempotency-Key. */
  creates?: boolean;
  accept?: string;
  lastEventId?: string;
  /** The server may hold the answer this long (long-poll) beyond the timeout. */
  holdMs?: number;
}

function env(name: string): string | undefined {
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  const value = proc?.env?.[name];
  return value ? value : undefined;
}

export function info(response: Response): ResponseInfo {
  const remaining = response.headers.get("ratelimit-remaining");
  return {
    status: response.status,
    headers: response.headers,
    requestId: response.headers.get("x-request-id") ?? undefined,
    idempotentReplayed: response.headers.get("idempotent-replayed") === "true",
    rateLimitRemaining: remaining === null ? undefined : Number(remaining),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function backoffMs(attempt: number): number {
  const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** attempt);
  return base / 2 + Math.random() * (base / 2);
}

/** Why fetch failed, from Node's (undici's) error cause when there is one. */
function networkReason(error: unknown): { refused: boolean; text: string } {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? "";
  const text = code === "ECONNREFUSED" ? "connection refused" : (cause?.message ?? String(error));
  return { refused: code === "ECONNREFUSED", text };
}

export class Transport {
  readonly baseUrl: string;
  readonly timeoutMs: number;
  readonly maxRetries: number;
  private readonly apiKey: string | undefined;
  private readonly fetchImpl: typeof fetch;
  private readonly headers: Record<string, string>;

  constructor(options: ClientOptions = {}) {
    this.apiKey = options.apiKey ?? env("WEFT_API_KEY");
    this.baseUrl = (options.baseUrl ?? env("WEFT_BASE_URL") ?? DEFAULT_BASE_URL).replace(
      /\/+$/,
      "",
    );
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.headers = options.headers ?? {};
    if (!this.apiKey) {
      throw new WeftError("No API key: pass { apiKey } or set WEFT_API_KEY (a wft_live_... key).");
    }
  }

  url(path: string, query?: Call["query"]): string {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    return url.toString();
  }

  /** The answer of `call` (2xx), after retries; a WeftError otherwise. */
  async send(call: Call, options: RequestOptions = {}): Promise<Response> {
    const url = this.url(call.path, call.query);
    const headers: Record<string, string> = {
      "User-Agent": `weftapi-typescript/${VERSION}`,
      Accept: call.accept ?? "application/json",
      ...this.headers,
      ...options.headers,
      Authorization: `Bearer ${this.apiKey}`,
    };
    let body: string | FormData | undefined;
    if (call.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(call.json);
    } else if (call.form !== undefined) {
      body = call.form; // fetch sets the multipart boundary
    }
    if (call.creates) {
      headers["Idempotency-Key"] = options.idempotencyKey ?? crypto.randomUUID();
    }
    if (call.lastEventId !== undefined) headers["Last-Event-ID"] = call.lastEventId;
    const retries = options.maxRetries ?? this.maxRetries;
    const timeoutMs = (options.timeoutMs ?? this.timeoutMs) + (call.holdMs ?? 0);
    for (let attempt = 0; ; attempt++) {
      const last = attempt >= retries;
      let response: Response;
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
      try {
        response = await this.fetchImpl(url, { method: call.method, headers, body, signal });
      } catch (error) {
        if (options.signal?.aborted) throw error;
        if (timeout.aborted) {
          if (last || call.retry === "once") {
            throw new WeftTimeoutError(`no answer from ${url} within ${timeoutMs} ms`);
          }
        } else {
          const reason = networkReason(error);
          if (last || (call.retry === "once" && !reason.refused)) {
            throw new WeftConnectionError(`cannot reach ${this.baseUrl}: ${reason.text}`, {
              cause: error,
            });
          }
        }
        await sleep(backoffMs(attempt));
        continue;
      }
      if (response.ok) return response;
      const error = apiError(
        response.status,
        await response.json().catch(() => null),
        response.headers,
      );
      const wait = this.retryDelay(error, call.retry, attempt);
      if (last || wait === undefined) throw error;
      await sleep(wait);
    }
  }

  /** How long to wait before retrying after `error`; undefined: do not retry. */
  private retryDelay(
    error: WeftAPIError,
    policy: RetryPolicy,
    attempt: number,
  ): number | undefined {
    const status = error.status;
    const retryable =
      status === 429 ||
      status === 503 ||
      (policy === "idempotent" && (status >= 500 || error.code === "IDEMPOTENCY_IN_FLIGHT"));
    if (!retryable) return undefined;
    const after = retryAfterSeconds(error.headers);
    if (after !== undefined && after > MAX_RETRY_AFTER_SECONDS) return undefined;
    return after !== undefined ? after * 1000 : backoffMs(attempt);
  }

  /** The JSON answer's `data` with what the response says about itself. */
  async json<T>(call: Call, options?: RequestOptions): Promise<WithResponse<T>> {
    const response = await this.send(call, options);
    const payload = (await response.json()) as { data: T };
    return { data: payload.data, response: info(response) };
  }
}
