// The client against a live stack (driven by tests/integration/test_typescript_client.py,
// which creates the workflows and passes them in the environment). `node --test`.
import assert from "node:assert/strict";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";

import {
  AuthenticationError,
  BadRequestError,
  NotFoundError,
  RunTimeoutError,
  Weft,
  WeftAPIError,
  WeftConnectionError,
  WeftError,
  type Run,
  type RunEvent,
} from "../src/index.js";

function need(name: string): string {
  const value = process.env[name];
  assert.ok(value, `${name} must be set (tests/integration/test_typescript_client.py sets it)`);
  return value;
}

const ECHO = need("WEFT_TEST_ECHO_WORKFLOW");
const ECHO_SLUG = need("WEFT_TEST_ECHO_SLUG");
const REVIEW = need("WEFT_TEST_REVIEW_WORKFLOW");
const weft = new Weft(); // WEFT_API_KEY and WEFT_BASE_URL from the environment

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

describe("configuration", () => {
  test("reads the key and base URL from the environment", async () => {
    assert.equal(weft.baseUrl, need("WEFT_BASE_URL"));
    const me = await weft.me();
    assert.match(me.user_id, /^usr_/);
    assert.ok(me.key_scopes.includes("workflow_runs:create"));
  });

  test("without a key it says how to give one", () => {
    const saved = process.env.WEFT_API_KEY;
    delete process.env.WEFT_API_KEY;
    try {
      assert.throws(
        () => new Weft(),
        (e: unknown) => e instanceof WeftError && /WEFT_API_KEY/.test(e.message),
      );
    } finally {
      process.env.WEFT_API_KEY = saved;
    }
  });
});

describe("runs", () => {
  test("create, then wait long-polls to the result with its cost", async () => {
    const created = await weft.runs.create(ECHO, {
      input_text: "from TS",
      params: { count: 2, tone: "casual" },
    });
    assert.equal(created.status, "pending");
    assert.match(created.id, /^run_/);
    const run: Run = await weft.runs.wait(created.id, { timeoutMs: 60_000 });
    assert.equal(run.status, "completed");
    assert.deepEqual(run.result, { input: "from TS", count: 2, tone: "casual" });
    assert.equal(run.cost_cents, 0);
    assert.equal(run.cost_breakdown[0]?.stage, "echo");
  });

  test("an idempotency key replays the first run, and the headers say so", async () => {
    const body = { input_text: "once", params: { count: 1 } };
    const key = `ts-${Date.now()}-${Math.random()}`;
    const first = await weft.runs.createWithResponse(ECHO, body, { idempotencyKey: key });
    const again = await weft.runs.createWithResponse(ECHO, body, { idempotencyKey: key });
    assert.equal(again.data.id, first.data.id);
    assert.equal(first.response.idempotentReplayed, false);
    assert.equal(again.response.idempotentReplayed, true);
    assert.equal(typeof first.response.rateLimitRemaining, "number");
    assert.match(first.response.requestId ?? "", /^req_/);
    await assert.rejects(
      weft.runs.create(ECHO, { ...body, input_text: "other" }, { idempotencyKey: key }),
      (e: unknown) =>
        e instanceof WeftAPIError && e.status === 409 && e.code === "IDEMPOTENCY_KEY_REUSED",
    );
  });

  test("errors are typed, with code, message, param and request id", async () => {
    await assert.rejects(weft.runs.get("run_doesnotexist"), (e: unknown) => {
      assert.ok(e instanceof NotFoundError && e instanceof WeftAPIError);
      assert.equal(e.status, 404);
      assert.equal(e.code, "NOT_FOUND");
      assert.match(e.requestId ?? "", /^req_/);
      assert.equal(e.requestId, e.headers.get("x-request-id"));
      assert.match(e.message, /^404 NOT_FOUND: .*\[request_id: req_/);
      return true;
    });
    await assert.rejects(
      weft.runs.create(ECHO, { input_text: "x", params: { count: "many" } }),
      (e: unknown) => {
        assert.ok(e instanceof BadRequestError);
        assert.equal(e.code, "INVALID_PARAM");
        assert.equal(e.param, "params.count");
        return true;
      },
    );
  });

  test("a bad key is an AuthenticationError; a closed port a WeftConnectionError", async () => {
    const wrong = new Weft({ apiKey: "wft_live_wrong" });
    await assert.rejects(
      wrong.me(),
      (e: unknown) => e instanceof AuthenticationError && e.code === "UNAUTHENTICATED",
    );
    const closed = need("WEFT_TEST_CLOSED_URL"); // a port nothing listens on
    const nowhere = new Weft({ baseUrl: closed, maxRetries: 0 });
    await assert.rejects(
      nowhere.me(),
      (e: unknown) =>
        e instanceof WeftConnectionError &&
        e.message === `cannot reach ${closed}: connection refused`,
    );
  });

  test("events stream the lifecycle and resume after a seq", async () => {
    const created = await weft.runs.create(ECHO, { input_text: "events", params: { count: 3 } });
    const events: RunEvent[] = await collect(weft.runs.events(created.id));
    const types = events.map((e) => e.type);
    assert.equal(types[0], "run.created");
    assert.equal(types.at(-1), "run.completed");
    assert.ok(types.includes("stage.completed"));
    assert.deepEqual(
      events.map((e) => e.seq),
      events.map((_, i) => i + 1),
    );
    const last = events.at(-1);
    assert.ok(last && last.type === "run.completed");
    assert.equal(last.data.status, "completed");
    const resumed = await collect(weft.runs.events(created.id, { lastEventId: 2 }));
    assert.equal(resumed[0]?.seq, 3);
    assert.equal(resumed.length, events.length - 2);
  });

  test("a review is answered with submitInput; wait gives up with the last snapshot", async () => {
    const created = await weft.runs.create(REVIEW, { input_text: "draft me" });
    const waiting = await weft.runs.wait(created.id, {
      statuses: ["awaiting_input"],
      timeoutMs: 60_000,
    });
    assert.equal(waiting.human_input_request?.prompt, "OK?");
    await assert.rejects(weft.runs.wait(created.id, { timeoutMs: 1_000 }), (e: unknown) => {
      assert.ok(e instanceof RunTimeoutError);
      assert.equal(e.run.status, "awaiting_input");
      return true;
    });
    const resumed = await weft.runs.submitInput(created.id, { approved: true });
    assert.notEqual(resumed.status, "awaiting_input");
    assert.equal((await weft.runs.wait(created.id, { timeoutMs: 60_000 })).status, "completed");
  });

  test("lists page themselves", async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 3; i++) {
      ids.add((await weft.runs.create(ECHO, { input_text: `page ${i}`, params: { count: 1 } })).id);
    }
    const page = await weft.runs.listPage({ workflow_id: ECHO, limit: 1 });
    assert.equal(page.data.length, 1);
    assert.equal(page.has_more, true);
    const every = await collect(weft.runs.list({ workflow_id: ECHO, limit: 2 }));
    const listed = every.map((r) => r.id);
    assert.equal(new Set(listed).size, listed.length, "no run twice");
    for (const id of ids) assert.ok(listed.includes(id), id);
    const workflows = await collect(weft.workflows.list({ limit: 1 }));
    assert.ok(workflows.some((w) => w.id === ECHO));
  });
});

describe("workflows, endpoints and attachments", () => {
  test("a workflow's fields are typed", async () => {
    const workflow = await weft.workflows.get(ECHO);
    assert.equal(workflow.slug, ECHO_SLUG);
    const count = workflow.fields.find((f) => f.name === "count");
    assert.equal(count?.type, "integer");
    assert.equal(count?.required, true);
    const snippets = await weft.workflows.code(ECHO, "node");
    assert.ok(snippets.length > 0 && snippets.every((s) => s.language === "node"));
  });

  test("a published endpoint takes a flat body", async () => {
    const created = await weft.endpoints.call(ECHO_SLUG, {
      input_text: "flat",
      count: 4,
      tone: "formal",
    });
    const run = await weft.runs.wait(created.id, { timeoutMs: 60_000 });
    assert.deepEqual(run.result, { input: "flat", count: 4, tone: "formal" });
  });

  test("attachments upload from bytes and from a path", async () => {
    const csv = "name,hours\nada,3\ngrace,5\n";
    const fromBytes = await weft.attachments.upload(new TextEncoder().encode(csv), "hours.csv");
    assert.equal(fromBytes.kind, "csv");
    assert.ok((fromBytes.row_count ?? 0) >= 2);
    const dir = await mkdtemp(join(tmpdir(), "weftapi-"));
    const path = join(dir, "notes.md");
    await writeFile(path, "# Notes\n\nhello\n");
    const fromPath = await weft.attachments.uploadPath(path);
    assert.equal(fromPath.original_filename, "notes.md");
    assert.equal((await weft.attachments.get(fromPath.id)).id, fromPath.id);
  });
});
