import type {
  FieldType,
  IDataObject,
  ILoadOptionsFunctions,
  INodePropertyOptions,
  ResourceMapperField,
  ResourceMapperFields,
} from "n8n-workflow";
import { weftRequest } from "./transport";

/** A typed input of a Weft workflow, as GET /api/v1/workflows/{id} lists it. */
export interface WeftField {
  name: string;
  type: "text" | "number" | "integer" | "boolean" | "json" | "select" | "file";
  required?: boolean;
  description?: string;
  default?: unknown;
  constraints?: { options?: Array<string | { value: string; label?: string }> };
}

const N8N_TYPES: Record<WeftField["type"], FieldType> = {
  text: "string",
  number: "number",
  integer: "number",
  boolean: "boolean",
  json: "object",
  select: "options",
  file: "string",
};

function workflowId(context: ILoadOptionsFunctions): string {
  const value = context.getNodeParameter("workflowId", "") as string | { value?: string };
  return typeof value === "string" ? value : (value.value ?? "");
}

export async function workflowFields(
  context: ILoadOptionsFunctions,
  id: string,
): Promise<WeftField[]> {
  if (!id) return [];
  const answer = await weftRequest(context, {
    method: "GET",
    path: `/api/v1/workflows/${encodeURIComponent(id)}`,
  });
  return ((answer.data as IDataObject | undefined)?.fields ?? []) as unknown as WeftField[];
}

/** Every workflow the key may run (the key's allowlist, if any), page by page. */
export async function getWorkflows(this: ILoadOptionsFunctions): Promise<INodePropertyOptions[]> {
  const options: INodePropertyOptions[] = [];
  let startingAfter: string | undefined;
  for (let page = 0; page < 20; page++) {
    const answer = await weftRequest(this, {
      method: "GET",
      path: "/api/v1/workflows",
      qs: { limit: 100, ...(startingAfter ? { starting_after: startingAfter } : {}) },
    });
    const workflows = (answer.data ?? []) as IDataObject[];
    for (const workflow of workflows) {
      options.push({
        name: `${String(workflow.name)} (${String(workflow.slug)})`,
        value: String(workflow.id),
        description: String(workflow.description ?? ""),
      });
    }
    if (!answer.has_more || workflows.length === 0) break;
    startingAfter = String(workflows[workflows.length - 1]?.id);
  }
  return options;
}

/** The chosen workflow's file fields, for the binary-property mapping. */
export async function getFileFields(this: ILoadOptionsFunctions): Promise<INodePropertyOptions[]> {
  const fields = await workflowFields(this, workflowId(this));
  return fields
    .filter((field) => field.type === "file")
    .map((field) => ({ name: field.name, value: field.name, description: field.description }));
}

function choice(option: string | { value: string; label?: string }): INodePropertyOptions {
  return typeof option === "string"
    ? { name: option, value: option }
    : { name: option.label ?? option.value, value: option.value };
}

/** The chosen workflow's fields as n8n inputs (file fields: an att_... id, or a binary below). */
export async function getRunFields(this: ILoadOptionsFunctions): Promise<ResourceMapperFields> {
  const fields = await workflowFields(this, workflowId(this));
  const mapped: ResourceMapperField[] = fields.map((field) => ({
    id: field.name,
    displayName: field.type === "file" ? `${field.name} (att_... id)` : field.name,
    required: Boolean(field.required),
    defaultMatch: false,
    display: true,
    type: N8N_TYPES[field.type] ?? "string",
    options: field.constraints?.options?.map(choice),
    defaultValue:
      typeof field.default === "string" ||
      typeof field.default === "number" ||
      typeof field.default === "boolean"
        ? field.default
        : undefined,
  }));
  return { fields: mapped, emptyFieldsNotice: "This workflow declares no fields" };
}
