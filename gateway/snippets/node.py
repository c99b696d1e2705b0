"""Node.js 18+ with the built-in fetch and FormData (CommonJS, no dependencies)."""

import json

from gateway.snippets.model import CallSpec

_HEAD = """// Runs the workflow and waits for its result. Node.js 18+: node run-workflow.js
const crypto = require("node:crypto");
const fs = require("node:fs/promises");
const path = require("node:path");

const BASE_URL = process.env.WEFT_BASE_URL || {base};
{auth}const TERMINAL = new Set(["completed", "failed", "canceled"]);

// The `data` of the answer; throws with the error envelope on any other status.
async function call(url, init, ...expected) {{
  const response = await fetch(url, init);
  const text = await response.text();
  if (!expected.includes(response.status)) {{
    throw new Error(`HTTP ${{response.status}}: ${{text}}`);
  }}
  return JSON.parse(text).data;
}}

async function fileBlob(filePath) {{
  return new Blob([await fs.readFile(filePath)]);
}}
"""

_UPLOAD = """
// Uploads a local file; answers its attachment id.
async function upload(filePath) {
  const form = new FormData();
  form.append("file", await fileBlob(filePath), path.basename(filePath));
  const attachment = await call(
    `${BASE_URL}/api/v1/attachments`,
    { method: "POST", headers: { ...HEADERS, "Idempotency-Key": crypto.randomUUID() }, body: form },
    200, 201,
  );
  return attachment.id;
}
"""

_KEYED = """const API_KEY = process.env.WEFT_API_KEY; // wft_live_...
if (!API_KEY) {
  console.error("Set WEFT_API_KEY to your API key.");
  process.exit(2);
}
const HEADERS = { Authorization: `Bearer ${API_KEY}` };
"""
_KEYLESS = """const HEADERS = {}; // a public endpoint: no API key
"""

# Where the run is read, and with which token.
_READ_KEYED = """  const pollUrl = `${BASE_URL}/api/v1/workflow-runs/${run.id}`;
  const pollHeaders = HEADERS;
"""
_READ_KEYLESS = """  // The answer's run token reads this one run.
  const pollUrl = run.links.self;
  const pollHeaders = { Authorization: `Bearer ${run.run_token}` };
  delete run.run_token;
"""

_POLL = """
  // Long-poll: each call returns as soon as the status changes (or after 30 s).
  while (!TERMINAL.has(run.status)) {
    console.error(`run ${run.id}: ${run.status}`);
    run = await call(`${pollUrl}?wait=30`, { headers: pollHeaders }, 200);
  }
  console.log(JSON.stringify(run, null, 2));
  process.exitCode = run.status === "completed" ? 0 : 1;
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
"""


def _js(value: object, indent: int = 2) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text.replace("\n", "\n" + " " * indent)


def _json_call(spec: CallSpec) -> str:
    lines = f"  const params = {_js(spec.params)};\n"
    for f in spec.files:
        lines += f"  params[{_js(f.name)}] = await upload({_js(f.path)});\n"
    # The endpoint's body is flat: the fields next to input_text.
    rest = "...params" if spec.keyless else "params"
    body = f"{{ input_text: {_js(spec.input_text)}, {rest} }}"
    return lines + (
        f"  let run = await call(`${{BASE_URL}}{spec.create_path}`, {{\n"
        '    method: "POST",\n'
        '    headers: { ...HEADERS, "Content-Type": "application/json", '
        '"Idempotency-Key": crypto.randomUUID() },\n'
        f"    body: JSON.stringify({body}),\n"
        "  }, 200, 201);\n"
    )


def _multipart_call(spec: CallSpec) -> str:
    lines = "  const form = new FormData();\n"
    for name, value in {"input_text": spec.input_text, **spec.form}.items():
        lines += f"  form.append({_js(name)}, {_js(value)});\n"
    for f in spec.files:
        lines += (
            f"  form.append({_js(f.name)}, await fileBlob({_js(f.path)}), "
            f"path.basename({_js(f.path)}));\n"
        )
    return lines + (
        f"  let run = await call(`${{BASE_URL}}{spec.create_path}`, {{\n"
        '    method: "POST",\n'
        '    headers: { ...HEADERS, "Idempotency-Key": crypto.randomUUID() },\n'
        "    body: form,\n"
        "  }, 200, 201);\n"
    )


def render(spec: CallSpec) -> str:
    """The Node.js script for this call."""
    head = _HEAD.format(base=_js(spec.base_url), auth=_KEYLESS if spec.keyless else _KEYED)
    if spec.files and spec.variant == "json":
        head += _UPLOAD
    call = _multipart_call(spec) if spec.variant == "multipart" else _json_call(spec)
    read = _READ_KEYLESS if spec.keyless else _READ_KEYED
    return f"{head}\nasync function main() {{\n{call}{read}{_POLL}"
