import { createHash } from "node:crypto";
import type {
  IDataObject,
  IExecuteFunctions,
  INodeExecutionData,
  INodeType,
  INodeTypeDescription,
  ResourceMapperValue,
} from "n8n-workflow";
import { NodeOperationError } from "n8n-workflow";
import { properties } from "./description";
import { getFileFields, getRunFields, getWorkflows } from "./fields";
import { multipartBody, type FilePart } from "./multipart";
import { weftRequest } from "./transport";

const FINISHED = new Set(["completed", "failed", "canceled"]);
const POLL_SECONDS = 30;

/** A stable key per item: a retried item sends the same request, so Weft replays its run. */
function derivedKey(context: IExecuteFunctions, parts: unknown[]): string {
  const digest = createHash("sha256").update(JSON.stringify(parts)).digest("hex");
  return `n8n-${context.getWorkflow().id ?? "local"}-${digest.slice(0, 40)}`;
}

function stopsWaiting(run: IDataObject): boolean {
  return FINISHED.has(String(run.status)) || run.status === "awaiting_input";
}

/** Long-poll GET /workflow-runs/{id}?wait=30 until the run stops or `maxSeconds` pass. */
async function waitForRun(
  context: IExecuteFunctions,
  runId: string,
  maxSeconds: number,
  itemIndex: number,
  until: (run: IDataObject) => boolean = stopsWaiting,
): Promise<IDataObject> {
  const deadline = Date.now() + maxSeconds * 1000;
  const path = `/api/v1/workflow-runs/${encodeURIComponent(runId)}`;
  let run = (await weftRequest(context, { method: "GET", path, itemIndex })).data as IDataObject;
  while (!until(run)) {
    const left = Math.floor((deadline - Date.now()) / 1000);
    if (left < 1) break;
    const wait = Math.min(POLL_SECONDS, left);
    const answer = await weftRequest(context, {
      method: "GET",
      path,
      qs: { wait },
      timeout: (wait + 15) * 1000,
      itemIndex,
    });
    run = answer.data as IDataObject;
  }
  return run;
}

async function fileParts(
  context: IExecuteFunctions,
  itemIndex: number,
  wanted: Array<{ field: string; binaryProperty: string }>,
): Promise<FilePart[]> {
  const parts: FilePart[] = [];
  for (const { field, binaryProperty } of wanted) {
    const binary = context.helpers.assertBinaryData(itemIndex, binaryProperty);
    parts.push({
      field,
      filename: binary.fileName ?? `${field}.bin`,
      contentType: binary.mimeType || "application/octet-stream",
      data: await context.helpers.getBinaryDataBuffer(itemIndex, binaryProperty),
    });
  }
  return parts;
}

function params(context: IExecuteFunctions, itemIndex: number): IDataObject {
  const mapped = context.getNodeParameter("fields", itemIndex, {}) as ResourceMapperValue;
  const values: IDataObject = {};
  for (const [name, value] of Object.entries(mapped?.value ?? {})) {
    // Unset inputs arrive as null or "": leave them out so the workflow's default applies.
    if (value !== null && value !== undefined && value !== "") values[name] = value;
  }
  return values;
}

async function runWorkflow(context: IExecuteFunctions, i: number): Promise<IDataObject> {
  const workflowId = context.getNodeParameter("workflowId", i) as string;
  const inputText = context.getNodeParameter("inputText", i, "") as string;
  const values = params(context, i);
  const wanted = (context.getNodeParameter("files.file", i, []) ?? []) as Array<{
    field: string;
    binaryProperty: string;
  }>;
  const files = await fileParts(context, i, wanted);
  const item = context.getInputData()[i]?.json ?? {};
  const key =
    (context.getNodeParameter("idempotencyKey", i, "") as string) ||
    derivedKey(context, [
      "run",
      workflowId,
      inputText,
      values,
      item,
      files.map((file) => [file.field, createHash("sha256").update(file.data).digest("hex")]),
    ]);
  const path = `/api/v1/workflows/${encodeURIComponent(workflowId)}/runs`;
  let created: IDataObject;
  if (files.length > 0) {
    const form: Record<string, string> = { input_text: inputText };
    for (const [name, value] of Object.entries(values)) {
      form[name] = typeof value === "string" ? value : JSON.stringify(value);
    }
    const { body, contentType } = multipartBody(form, files);
    created = await weftRequest(context, {
      method: "POST",
      path,
      body,
      headers: { "Content-Type": contentType, "Idempotency-Key": key },
      itemIndex: i,
    });
  } else {
    created = await weftRequest(context, {
      method: "POST",
      path,
      body: { input_text: inputText, params: values },
      headers: { "Idempotency-Key": key },
      itemIndex: i,
    });
  }
  const run = created.data as IDataObject;
  if (!context.getNodeParameter("waitForResult", i, true)) return run;
  const maxSeconds = context.getNodeParameter("maxWaitSeconds", i, 600) as number;
  return waitForRun(context, String(run.id), maxSeconds, i);
}

async function uploadFile(context: IExecuteFunctions, i: number): Promise<IDataObject> {
  const binaryProperty = context.getNodeParameter("binaryProperty", i) as string;
  const [file] = await fileParts(context, i, [{ field: "file", binaryProperty }]);
  if (!file) throw new NodeOperationError(context.getNode(), "No file", { itemIndex: i });
  const key =
    (context.getNodeParameter("idempotencyKey", i, "") as string) ||
    derivedKey(context, ["upload", file.filename, createHash("sha256").update(file.data).digest("hex")]);
  const { body, contentType } = multipartBody({}, [file]);
  const answer = await weftRequest(context, {
    method: "POST",
    path: "/api/v1/attachments",
    body,
    headers: { "Content-Type": contentType, "Idempotency-Key": key },
    itemIndex: i,
  });
  return answer.data as IDataObject;
}

async function answerReview(context: IExecuteFunctions, i: number): Promise<IDataObject> {
  const runId = context.getNodeParameter("runId", i) as string;
  const raw = context.getNodeParameter("values", i) as string | IDataObject;
  let values: IDataObject;
  try {
    values = typeof raw === "string" ? (JSON.parse(raw) as IDataObject) : raw;
  } catch {
    throw new NodeOperationError(context.getNode(), "Values (JSON) is not valid JSON", {
      itemIndex: i,
    });
  }
  const answer = await weftRequest(context, {
    method: "POST",
    path: `/api/v1/workflow-runs/${encodeURIComponent(runId)}/input`,
    body: { values },
    itemIndex: i,
  });
  const run = answer.data as IDataObject;
  if (!context.getNodeParameter("waitForResult", i, true)) return run;
  const maxSeconds = context.getNodeParameter("maxWaitSeconds", i, 600) as number;
  // The answered run is "running" again; wait for it to finish or ask again.
  return waitForRun(context, runId, maxSeconds, i);
}

async function getRun(context: IExecuteFunctions, i: number): Promise<IDataObject> {
  const runId = context.getNodeParameter("runId", i) as string;
  if (context.getNodeParameter("waitForChange", i, false)) {
    return waitForRun(context, runId, context.getNodeParameter("maxWaitSeconds", i, 600) as number, i);
  }
  const path = `/api/v1/workflow-runs/${encodeURIComponent(runId)}`;
  return (await weftRequest(context, { method: "GET", path, itemIndex: i })).data as IDataObject;
}

async function cancelRun(context: IExecuteFunctions, i: number): Promise<IDataObject> {
  const runId = context.getNodeParameter("runId", i) as string;
  const path = `/api/v1/workflow-runs/${encodeURIComponent(runId)}/cancel`;
  return (await weftRequest(context, { method: "POST", path, body: {}, itemIndex: i }))
    .data as IDataObject;
}

const OPERATIONS = { runWorkflow, uploadFile, getRun, answerReview, cancelRun };

/** Weft: run LLM workflows, upload files, read, answer and cancel runs. */
export class Weft implements INodeType {
  description: INodeTypeDescription = {
    displayName: "Weft",
    name: "weft",
    icon: "file:weft.svg",
    group: ["transform"],
    version: 1,
    subtitle: '={{ $parameter["operation"] }}',
    description: "Run Weft LLM workflows and manage their runs",
    defaults: { name: "Weft" },
    inputs: ["main"],
    outputs: ["main"],
    usableAsTool: true,
    credentials: [{ name: "weftApi", required: true }],
    properties,
  };

  methods = {
    loadOptions: { getWorkflows, getFileFields },
    resourceMapping: { getRunFields },
  };

  async execute(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
    const items = this.getInputData();
    const output: INodeExecutionData[] = [];
    const operation = this.getNodeParameter("operation", 0) as keyof typeof OPERATIONS;
    for (let i = 0; i < items.length; i++) {
      try {
        const json = await OPERATIONS[operation](this, i);
        output.push({ json, pairedItem: { item: i } });
      } catch (error) {
        if (!this.continueOnFail()) throw error;
        output.push({ json: { error: (error as Error).message }, pairedItem: { item: i } });
      }
    }
    return [output];
  }
}
