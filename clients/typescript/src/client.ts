// The Weft client: one resource object per part of the API, all over one Transport.
import { RunTimeoutError, WeftError } from "./errors.js";
import {
  type Call,
  type ClientOptions,
  type RequestOptions,
  Transport,
  type WithResponse,
} from "./http.js";
import { sseFrames } from "./sse.js";
import type {
  Attachment,
  CodeSnippet,
  CreatedRun,
  CreateRunRequest,
  ListRunsQuery,
  Me,
  Page,
  Run,
  RunEvent,
  RunStatus,
  SnippetLanguage,
  Workflow,
  WorkflowSummary,
} from "./types.js";

export const TERMINAL_STATUSES: readonly RunStatus[] = ["completed", "failed", "canceled"];
const TERMINAL_EVENTS = new Set(["run.completed", "run.failed", "run.canceled"]);
const MAX_WAIT_SECONDS = 60;

const enc = encodeURIComponent;

/** Every item of a paginated list, fetching pages (`starting_after`) as needed. */
async function* everyItem<T extends { id: string }>(
  page: (startingAfter: string | undefined) => Promise<Page<T>>,
  startingAfter?: string,
): AsyncGenerator<T> {
  let after = startingAfter;
  for (;;) {
    const { data, has_more } = await page(after);
    yield* data;
    const last = data.at(-1);
    if (!has_more || last === undefined) return;
    after = last.id;
  }
}

class Resource {
  constructor(protected readonly transport: Transport) {}

  protected async data<T>(call: Call, options?: RequestOptions): Promise<T> {
    return (await this.transport.json<T>(call, options)).data;
  }

  protected async page<T>(call: Call, options?: RequestOptions): Promise<Page<T>> {
    const response = await this.transport.send(call, options);
    return (await response.json()) as Page<T>;
  }
}

export class Workflows extends Resource {
  /** Every workflow the key may run (its allowlist, if any), page by page as needed. */
  list(
    query: { limit?: number; startingAfter?: string } = {},
    options?: RequestOptions,
  ): AsyncGenerator<WorkflowSummary> {
    return everyItem(
      (after) => this.listPage({ limit: query.limit, startingAfter: after }, options),
      query.startingAfter,
    );
  }

  /** One page of workflows. */
  listPage(
    query: { limit?: number; startingAfter?: string } = {},
    options?: RequestOptions,
  ): Promise<Page<WorkflowSummary>> {
    const q = { limit: query.limit, starting_after: query.startingAfter };
    return this.page(
      { method: "GET", path: "/api/v1/workflows", query: q, retry: "idempotent" },
      options,
    );
  }

  get(workflowId: string, options?: RequestOptions): Promise<Workflow> {
    return this.data(
      { method: "GET", path: `/api/v1/workflows/${enc(workflowId)}`, retry: "idempotent" },
      options,
    );
  }

  /** Ready-to-run client code for the workflow. */
  async code(
    workflowId: string,
    language?: SnippetLanguage,
    options?: RequestOptions,
  ): Promise<CodeSnippet[]> {
    const call: Call = {
      method: "GET",
      path: `/api/v1/workflows/${enc(workflowId)}/code`,
      query: { language },
      retry: "idempotent",
    };
    return this.data(call, options);
  }
}

/** What `attachments.upload` accepts: bytes with a file name. */
export type Uploadable = Blob | Uint8Array | ArrayBuffer | string;

export class Attachments extends Resource {
  /** Uploads one file (multipart); its kind is detected by the server. */
  upload(file: Uploadable, filename: string, options?: RequestOptions): Promise<Attachment> {
    return this.uploadWithResponse(file, filename, options).then((r) => r.data);
  }

  uploadWithResponse(
    file: Uploadable,
    filename: string,
    options?: RequestOptions,
  ): Promise<WithResponse<Attachment>> {
    const form = new FormData();
    const blob = file instanceof Blob ? file : new Blob([file as BlobPart]);
    form.append("file", blob, filename);
    const call: Call = {
      method: "POST",
      path: "/api/v1/attachments",
      form,
      retry: "idempotent",
      creates: true,
    };
    return this.transport.json<Attachment>(call, options);
  }

  /** Uploads a file from disk (Node.js only). */
  async uploadPath(path: string, options?: RequestOptions): Promise<Attachment> {
    const { readFile } = await import("node:fs/promises");
    const { basename } = await import("node:path");
    return this.upload(new Blob([await readFile(path)]), basename(path), options);
  }

  get(attachmentId: string, options?: RequestOptions): Promise<Attachment> {
    return this.data(
      { method: "GET", path: `/api/v1/attachments/${enc(attachmentId)}`, retry: "idempotent" },
      options,
    );
  }
}

export interface EventsOptions {
  /** Resume after this event's seq (Last-Event-ID). */
  lastEventId?: number;
  signal?: AbortSignal;
  /** Reconnections after a dropped stream (default: the client's maxRetries). */
  maxReconnects?: number;
}

export class Runs extends Resource {
  /** Starts a run; answers at once (status `pending`). Retries send the same Idempotency-Key. */
  async create(
    workflowId: string,
    body: CreateRunRequest,
    options?: RequestOptions,
  ): Promise<CreatedRun> {
    return (await this.createWithResponse(workflowId, body, options)).data;
  }

  /** `create`, with the response's headers (RateLimit-Remaining, Idempotent-Replayed). */
  createWithResponse(
    workflowId: string,
    body: CreateRunRequest,
    options?: RequestOptions,
  ): Promise<WithResponse<CreatedRun>> {
    const call: Call = {
      method: "POST",
      path: `/api/v1/workflows/${enc(workflowId)}/runs`,
      json: body,
      retry: "idempotent",
      creates: true,
    };
    return this.transport.json<CreatedRun>(call, options);
  }

  /** The run; `wait` (0-60 s) long-polls until its status changes. */
  get(runId: string, query: { wait?: number } = {}, options?: RequestOptions): Promise<Run> {
    const wait = query.wait ?? 0;
    const call: Call = {
      method: "GET",
      path: `/api/v1/workflow-runs/${enc(runId)}`,
      query: { wait: wait || undefined },
      retry: "idempotent",
      holdMs: wait * 1000,
    };
    return this.data(call, options);
  }

  /**
   * Long-polls until the run reaches one of `statuses` (default: terminal). After
   * `timeoutMs` (default 10 minutes): RunTimeoutError, whose `run` is the last snapshot.
   */
  async wait(
    runId: string,
    {
      timeoutMs = 600_000,
      statuses = TERMINAL_STATUSES,
    }: { timeoutMs?: number; statuses?: readonly RunStatus[] } = {},
    options?: RequestOptions,
  ): Promise<Run> {
    const deadline = Date.now() + timeoutMs;
    let run = await this.get(runId, {}, options);
    while (!statuses.includes(run.status)) {
      const left = Math.floor((deadline - Date.now()) / 1000);
      if (left <= 0) throw new RunTimeoutError(run, timeoutMs);
      run = await this.get(runId, { wait: Math.min(MAX_WAIT_SECONDS, left) }, options);
    }
    return run;
  }

  /** Every run of the caller, newest first, page by page as needed. */
  list(query: ListRunsQuery = {}, options?: RequestOptions): AsyncGenerator<Run> {
    return everyItem(
      (after) => this.listPage({ ...query, starting_after: after }, options),
      query.starting_after,
    );
  }

  /** One page of runs. */
  listPage(query: ListRunsQuery = {}, options?: RequestOptions): Promise<Page<Run>> {
    return this.page(
      { method: "GET", path: "/api/v1/workflow-runs", query: { ...query }, retry: "idempotent" },
      options,
    );
  }

  /** Answers a run in `awaiting_input` with the fields of its request. */
  submitInput(
    runId: string,
    values: Record<string, unknown>,
    options?: RequestOptions,
  ): Promise<Run> {
    const call: Call = {
      method: "POST",
      path: `/api/v1/workflow-runs/${enc(runId)}/input`,
      json: { values },
      retry: "once",
    };
    return this.data(call, options);
  }

  /** Cancels a pending, running or waiting run (409 once it has ended). */
  cancel(runId: string, options?: RequestOptions): Promise<Run> {
    const call: Call = {
      method: "POST",
      path: `/api/v1/workflow-runs/${enc(runId)}/cancel`,
      retry: "once",
    };
    return this.data(call, options);
  }

  /**
   * The run's lifecycle events (Server-Sent Events) until the terminal one. A dropped
   * stream is resumed with Last-Event-ID, so no event is seen twice or missed.
   */
  async *events(
    runId: string,
    { lastEventId, signal, maxReconnects }: EventsOptions = {},
  ): AsyncGenerator<RunEvent> {
    let after = lastEventId;
    let reconnects = 0;
    const most = maxReconnects ?? this.transport.maxRetries;
    for (;;) {
      const call: Call = {
        method: "GET",
        path: `/api/v1/workflow-runs/${enc(runId)}/events`,
        accept: "text/event-stream",
        retry: "idempotent",
        lastEventId: after === undefined ? undefined : String(after),
      };
      // A long timeout: it also bounds reading the stream (the server sends a keep-alive
      // every 15 s); a stream cut by it is resumed below like any dropped one.
      const response = await this.transport.send(call, { signal, timeoutMs: 3_600_000 });
      if (response.body === null) throw new WeftError("the event stream has no body");
      try {
        for await (const frame of sseFrames(response.body)) {
          const event = { ...(JSON.parse(frame.data) as RunEvent), seq: Number(frame.id ?? 0) };
          after = event.seq;
          reconnects = 0;
          yield event;
          if (TERMINAL_EVENTS.has(event.type)) return;
        }
      } catch (error) {
        if (signal?.aborted || reconnects >= most) throw error;
      }
      if (reconnects++ >= most)
        throw new WeftError(`the event stream of ${runId} ended before the run did`);
    }
  }
}

export class Endpoints extends Resource {
  /** Calls a workflow's published endpoint with a flat body (its fields at the top level). */
  call(slug: string, body: Record<string, unknown>, options?: RequestOptions): Promise<CreatedRun> {
    const call: Call = {
      method: "POST",
      path: `/api/v1/endpoints/${enc(slug)}`,
      json: body,
      retry: "idempotent",
      creates: true,
    };
    return this.data(call, options);
  }
}

/**
 * The Weft API client.
 *
 * ```ts
 * const weft = new Weft(); // WEFT_API_KEY, WEFT_BASE_URL
 * const run = await weft.runs.create("wf_...", { input_text: "Summarise this." });
 * const done = await weft.runs.wait(run.id);
 * ```
 */
export class Weft {
  readonly workflows: Workflows;
  readonly attachments: Attachments;
  readonly runs: Runs;
  readonly endpoints: Endpoints;
  private readonly transport: Transport;

  constructor(options: ClientOptions = {}) {
    this.transport = new Transport(options);
    this.workflows = new Workflows(this.transport);
    this.attachments = new Attachments(this.transport);
    this.runs = new Runs(this.transport);
    this.endpoints = new Endpoints(this.transport);
  }

  get baseUrl(): string {
    return this.transport.baseUrl;
  }

  /** The account and key behind the token. */
  async me(options?: RequestOptions): Promise<Me> {
    return (
      await this.transport.json<Me>(
        { method: "GET", path: "/api/v1/me", retry: "idempotent" },
        options,
      )
    ).data;
  }
}
