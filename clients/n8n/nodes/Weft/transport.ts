import type {
  IDataObject,
  IExecuteFunctions,
  IHttpRequestMethods,
  IHttpRequestOptions,
  ILoadOptionsFunctions,
  JsonObject,
} from "n8n-workflow";
import { NodeApiError } from "n8n-workflow";

export const CREDENTIAL = "weftApi";
/** Statuses worth retrying with the same Idempotency-Key; every other 4xx is final. */
const RETRYABLE = new Set([429, 500, 502, 503, 504]);
const MAX_ATTEMPTS = 4;

type Context = IExecuteFunctions | ILoadOptionsFunctions;

export interface WeftRequest {
  method: IHttpRequestMethods;
  path: string;
  qs?: IDataObject;
  body?: IDataObject | Buffer;
  headers?: IDataObject;
  /** Client-side timeout in ms (a long-poll needs more than its `wait`). */
  timeout?: number;
  itemIndex?: number;
}

interface FullResponse {
  statusCode: number;
  headers: Record<string, string | undefined>;
  body: unknown;
}

async function baseUrl(context: Context): Promise<string> {
  const credentials = await context.getCredentials(CREDENTIAL);
  return String(credentials.baseUrl).replace(/\/+$/, "");
}

function parse(body: unknown): unknown {
  if (Buffer.isBuffer(body)) body = body.toString("utf8");
  if (typeof body !== "string") return body;
  try {
    return JSON.parse(body);
  } catch {
    return body;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The error n8n shows: Weft's code, message and request id, with the HTTP status. */
function weftError(context: Context, response: FullResponse, itemIndex?: number): NodeApiError {
  const body = parse(response.body) as { error?: Record<string, unknown> } | undefined;
  const error = body?.error ?? {};
  const code = String(error.code ?? `HTTP_${response.statusCode}`);
  const requestId = String(error.request_id ?? response.headers["x-request-id"] ?? "");
  const param = error.param ? ` (param ${String(error.param)})` : "";
  const message = String(error.message ?? `HTTP ${response.statusCode}`);
  return new NodeApiError(context.getNode(), (body ?? {}) as JsonObject, {
    httpCode: String(response.statusCode),
    message: `${code}: ${message}${param}`,
    description: `Weft request id ${requestId || "unknown"}`,
    itemIndex,
  });
}

/**
 * One Weft API call with the credential's key. 429 and 5xx are retried (after
 * Retry-After, else a short backoff) with the same headers, so an Idempotency-Key makes
 * the retry replay; any other 4xx throws at once with Weft's error code.
 */
export async function weftRequest(context: Context, request: WeftRequest): Promise<IDataObject> {
  const options: IHttpRequestOptions = {
    method: request.method,
    url: `${await baseUrl(context)}${request.path}`,
    qs: request.qs,
    body: request.body,
    headers: { Accept: "application/json", ...request.headers },
    json: !Buffer.isBuffer(request.body),
    timeout: request.timeout ?? 60_000,
    returnFullResponse: true,
    ignoreHttpStatusErrors: true,
  };
  for (let attempt = 1; ; attempt++) {
    const response = (await context.helpers.httpRequestWithAuthentication.call(
      context,
      CREDENTIAL,
      options,
    )) as FullResponse;
    if (response.statusCode < 400) return (parse(response.body) ?? {}) as IDataObject;
    if (!RETRYABLE.has(response.statusCode) || attempt >= MAX_ATTEMPTS) {
      throw weftError(context, response, request.itemIndex);
    }
    const retryAfter = Number(response.headers["retry-after"]);
    await sleep(Number.isFinite(retryAfter) ? Math.min(retryAfter, 30) * 1000 : 500 * 2 ** attempt);
  }
}
