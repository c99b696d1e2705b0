"""curl in a plain bash script: no jq, python3 reads the JSON answers."""

import json
import shlex

from gateway.snippets.model import CallSpec

_FILE_MARK = "@@WEFT_FILE_{}@@"

_HEAD = """#!/usr/bin/env bash
# Runs the workflow and waits for its result. Needs bash, curl and python3.
set -euo pipefail
: "${{WEFT_API_KEY:?Set WEFT_API_KEY to your API key (wft_live_...)}}"
BASE_URL="${{WEFT_BASE_URL:-{base}}}"
AUTH="Authorization: Bearer $WEFT_API_KEY"

# call EXPECTED_STATUS CURL_ARGS...: prints the body; fails loudly on any other status.
call() {{
  local expected="$1"; shift
  local out status
  out="$(curl -sS -w '\\n%{{http_code}}' -H "$AUTH" "$@")"
  status="${{out##*$'\\n'}}"
  out="${{out%$'\\n'*}}"
  if [[ " $expected " != *" $status "* ]]; then
    echo "HTTP $status: $out" >&2
    exit 1
  fi
  printf '%s' "$out"
}}
field() {{ python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][sys.argv[1]])' "$1"; }}
new_key() {{ python3 -c 'import uuid; print(uuid.uuid4())'; }}
"""

_POLL = """RUN_ID="$(printf '%s' "$RUN" | field id)"
STATUS="$(printf '%s' "$RUN" | field status)"
# Long-poll: each call returns as soon as the status changes (or after 30 s).
while [[ "$STATUS" != completed && "$STATUS" != failed && "$STATUS" != canceled ]]; do
  echo "run $RUN_ID: $STATUS" >&2
  RUN="$(call 200 "$BASE_URL/api/v1/workflow-runs/$RUN_ID?wait=30")"
  STATUS="$(printf '%s' "$RUN" | field status)"
done
printf '%s' "$RUN" |
  python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["data"], indent=2))'
[[ "$STATUS" == completed ]]
"""


def _upload(var: str, path: str) -> str:
    return (
        f'{var}="$(call "200 201" -X POST "$BASE_URL/api/v1/attachments" '
        f'-H "Idempotency-Key: $(new_key)" -F {shlex.quote("file=@" + path)} | field id)"\n'
    )


def _json_call(spec: CallSpec) -> str:
    params = dict(spec.params)
    for f in spec.files:
        params[f.name] = _FILE_MARK.format(f.name)
    body = json.dumps({"input_text": spec.input_text, "params": params}, indent=2)
    # printf reads backslashes and percent signs in its format: escape both.
    template = body.replace("\\", "\\\\").replace("%", "%%")
    args = []
    lines = ""
    for i, f in enumerate(spec.files):
        var = f"ATT_{i}"
        lines += _upload(var, f.path)
        template = template.replace(json.dumps(_FILE_MARK.format(f.name)), '"%s"')
        args.append(f'"${var}"')
    lines += f'PAYLOAD="$(printf {shlex.quote(template)} {" ".join(args)})"\n'
    lines += (
        'RUN="$(call "200 201" -X POST "$BASE_URL/api/v1/workflows/'
        f'{spec.workflow_id}/runs" \\\n'
        '  -H "Content-Type: application/json" -H "Idempotency-Key: $(new_key)" \\\n'
        '  --data-binary "$PAYLOAD")"\n'
    )
    return lines


def _multipart_call(spec: CallSpec) -> str:
    parts = [f"--form-string {shlex.quote('input_text=' + spec.input_text)}"]
    parts += [f"--form-string {shlex.quote(f'{k}={v}')}" for k, v in spec.form.items()]
    parts += [f"-F {shlex.quote(f'{f.name}=@{f.path}')}" for f in spec.files]
    joined = " \\\n  ".join(parts)
    return (
        'RUN="$(call "200 201" -X POST "$BASE_URL/api/v1/workflows/'
        f'{spec.workflow_id}/runs" \\\n'
        '  -H "Idempotency-Key: $(new_key)" \\\n'
        f'  {joined})"\n'
    )


def render(spec: CallSpec) -> str:
    """The bash script for this call."""
    head = _HEAD.format(base=spec.base_url)
    call = _multipart_call(spec) if spec.variant == "multipart" else _json_call(spec)
    return f"{head}\n{call}\n{_POLL}"
