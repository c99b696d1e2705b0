// Friendly names for the generated schema types (src/schema.ts, from gateway/openapi.yaml).
import type { components, operations } from "./schema.js";

type Schemas = components["schemas"];

export type Me = Schemas["Me"];
export type WorkflowSummary = Schemas["WorkflowSummary"];
export type Workflow = Schemas["Workflow"];
export type Field = Schemas["Field"];
export type CodeSnippet = Schemas["CodeSnippet"];
export type Attachment = Schemas["Attachment"];
export type Run = Schemas["Run"];
export type RunStatus = Schemas["RunStatus"];
export type CreatedRun = Schemas["CreatedRun"];
export type CreateRunRequest = Schemas["CreateRunRequest"];
export type HumanInputRequest = Schemas["HumanInputRequest"];
export type CostItem = Schemas["CostItem"];
export type RunEventType = Schemas["RunEventType"];
/** One lifecycle event, with `seq` (the SSE id: resume after it with `lastEventId`). */
export type RunEvent = Schemas["RunEvent"] & { seq: number };
export type SnippetLanguage = Schemas["SnippetLanguage"];
export type ListRunsQuery = NonNullable<operations["listRuns"]["parameters"]["query"]>;

/** One page of a list: `data` and whether more follow. */
export interface Page<T> {
  data: T[];
  has_more: boolean;
}
