import type { INodeProperties } from "n8n-workflow";

const RUN_ID: INodeProperties = {
  displayName: "Run ID",
  name: "runId",
  type: "string",
  default: "",
  required: true,
  placeholder: "run_...",
};

const MAX_WAIT: INodeProperties = {
  displayName: "Max Wait (Seconds)",
  name: "maxWaitSeconds",
  type: "number",
  default: 600,
  typeOptions: { minValue: 1 },
  description:
    "How long to long-poll for the run before returning it as it is (still running or waiting)",
};

/** The parameters of the Weft node, per operation. */
export const properties: INodeProperties[] = [
  {
    displayName: "Operation",
    name: "operation",
    type: "options",
    noDataExpression: true,
    default: "runWorkflow",
    options: [
      {
        name: "Run Workflow",
        value: "runWorkflow",
        action: "Run a workflow",
        description: "Start a run (JSON, or multipart with files) and wait for its result",
      },
      {
        name: "Upload File",
        value: "uploadFile",
        action: "Upload a file",
        description: "Upload a binary property as an attachment (att_...)",
      },
      { name: "Get Run", value: "getRun", action: "Get a run", description: "Read a run" },
      {
        name: "Answer Review",
        value: "answerReview",
        action: "Answer a review",
        description: "Submit the values a waiting human-review stage asks for",
      },
      { name: "Cancel Run", value: "cancelRun", action: "Cancel a run" },
    ],
  },
  // -- Run workflow ------------------------------------------------------------------------
  {
    displayName: "Workflow Name or ID",
    name: "workflowId",
    type: "options",
    typeOptions: { loadOptionsMethod: "getWorkflows" },
    default: "",
    required: true,
    description:
      'The workflows this API key may run. Choose from the list, or specify an ID using an <a href="https://docs.n8n.io/code/expressions/">expression</a>.',
    displayOptions: { show: { operation: ["runWorkflow"] } },
  },
  {
    displayName: "Input Text",
    name: "inputText",
    type: "string",
    typeOptions: { rows: 3 },
    default: "",
    description: "The run's input_text (e.g. {{ $json.text }} of the trigger's item)",
    displayOptions: { show: { operation: ["runWorkflow"] } },
  },
  {
    displayName: "Fields",
    name: "fields",
    type: "resourceMapper",
    noDataExpression: true,
    default: { mappingMode: "defineBelow", value: null },
    required: true,
    typeOptions: {
      loadOptionsDependsOn: ["workflowId"],
      resourceMapper: {
        resourceMapperMethod: "getRunFields",
        mode: "add",
        fieldWords: { singular: "field", plural: "fields" },
        addAllFields: true,
        multiKeyMatch: false,
        supportAutoMap: false,
      },
    },
    displayOptions: { show: { operation: ["runWorkflow"] } },
  },
  {
    displayName: "Files",
    name: "files",
    placeholder: "Add File",
    type: "fixedCollection",
    typeOptions: { multipleValues: true },
    default: {},
    description:
      "Send binary properties of the item as the workflow's file fields (one multipart request)",
    displayOptions: { show: { operation: ["runWorkflow"] } },
    options: [
      {
        displayName: "File",
        name: "file",
        values: [
          {
            displayName: "Field Name or ID",
            name: "field",
            type: "options",
            typeOptions: { loadOptionsMethod: "getFileFields", loadOptionsDependsOn: ["workflowId"] },
            default: "",
            description:
              'A file field of the workflow. Choose from the list, or specify an ID using an <a href="https://docs.n8n.io/code/expressions/">expression</a>.',
          },
          {
            displayName: "Input Binary Field",
            name: "binaryProperty",
            type: "string",
            default: "data",
            description: "The item's binary property holding the file",
          },
        ],
      },
    ],
  },
  {
    displayName: "Wait for Result",
    name: "waitForResult",
    type: "boolean",
    default: true,
    description:
      "Whether to long-poll until the run completes, fails, is canceled or waits for review; off returns the new run at once",
    displayOptions: { show: { operation: ["runWorkflow", "answerReview"] } },
  },
  {
    ...MAX_WAIT,
    displayOptions: { show: { operation: ["runWorkflow", "answerReview"], waitForResult: [true] } },
  },
  {
    displayName: "Idempotency Key",
    name: "idempotencyKey",
    type: "string",
    default: "",
    description:
      "Leave empty to derive one from the item (workflow ID + a hash of its data and the request), so a retried item replays its first run; or use a stable ID of the trigger record, e.g. {{ $workflow.id }}-{{ $json.id }}",
    displayOptions: { show: { operation: ["runWorkflow", "uploadFile"] } },
  },
  // -- Upload file -------------------------------------------------------------------------
  {
    displayName: "Input Binary Field",
    name: "binaryProperty",
    type: "string",
    default: "data",
    required: true,
    description: "The item's binary property holding the file",
    displayOptions: { show: { operation: ["uploadFile"] } },
  },
  // -- Get run, Answer review, Cancel run --------------------------------------------------
  { ...RUN_ID, displayOptions: { show: { operation: ["getRun", "answerReview", "cancelRun"] } } },
  {
    displayName: "Wait for Change",
    name: "waitForChange",
    type: "boolean",
    default: false,
    description:
      "Whether to long-poll until the run is finished or waits for review (else read it as it is)",
    displayOptions: { show: { operation: ["getRun"] } },
  },
  { ...MAX_WAIT, displayOptions: { show: { operation: ["getRun"], waitForChange: [true] } } },
  {
    displayName: "Values (JSON)",
    name: "values",
    type: "json",
    default: '{\n  "approved": true\n}',
    required: true,
    description: "A value for each field of the run's human_input_request",
    displayOptions: { show: { operation: ["answerReview"] } },
  },
];
