"""curl in a plain bash script: no jq, python3 reads the JSON answers."""

import json
import shlex

from gateway.snippets.model import CallSpec

_FILE_MARK = "@@WEFT_FILE_{}@@"

_KEYED = """: "${WEFT_API_KEY:?Set WEFT_API_KEY to your API key (wft_live_...)}"
AUTH="Authorization: Bearer $WEFT_API_KEY"
"""
_KEYLESS = "# A public endpoint: no API key. Its answer carries the token that reads the run.\n"

_HEAD = """#!/usr/bin/env bash
# Runs the workflow and waits for its result. Needs bash, curl and python3.
set -euo pipefail
{auth}BASE_URL="${{WEFT_BASE_URL:-{base}}}"

# call EXPECTED_STATUS CURL_ARGS...: prints the body; fails loudly on any other status.
call() {{
  local expected="$1"; shift
  local out status
  out="$(curl -sS -w '\\n%{{http_code}}' "$@")"
  status="${{out##*$'\\n'}}"
  out="${{out%$'\\n'*}}"
  if [[ " $expected " != *" $status "* ]]; then
    echo "HTTP $status: $out" >&2
    exit 1
  fi
  printf '%s' "$out"
}}
# field NAME...: the answer's data[NAME][...] (e.g. field links self).
field() {{
  python3 -c 'import functools, json, sys
print(functools.reduce(lambda v, k: v[k], sys.argv[1:], json.load(sys.stdin)["data"]))' "$@"
}}
new_key() {{ python3 -c 'import uuid; print(uuid.uuid4())'; }}
"""

# Where the run is read, and with which token.
_READ_KEYED = """POLL_URL="$BASE_URL/api/v1/workflow-runs/$RUN_ID"
POLL_AUTH="$AUTH"
"""
_READ_KEYLESS = """POLL_URL="$(printf '%s' "$RUN" | field links self)"
POLL_AUTH="Authorization: Bearer $(printf '%s' "$RUN" | field run_token)"
"""

_POLL = """RUN_ID="$(printf '%s' "$RUN" | field id)"
STATUS="$(printf '%s' "$RUN" | field status)"
{read}# Long-poll: each call returns as soon as the status changes (or after 30 s).
while [[ "$STATUS" != completed && "$STATUS" != failed && "$STATUS" != canceled ]]; do
  echo "run $RUN_ID: $STATUS" >&2
  RUN="$(call 200 "$POLL_URL?wait=30" -H "$POLL_AUTH")"
  STATUS="$(printf '%s' "$RUN" | field status)"
done
printf '%s' "$RUN" | python3 -c 'import json, sys
run = json.load(sys.stdin)["data"]
run.pop("run_token", None)
print(json.dumps(run, indent=2))'
[[ "$STATUS" == completed ]]
"""


def _auth(spec: CallSpec) -> str:
    """The Authorization argument of calls made with the API key (none when keyless)."""
    return "" if spec.keyless else '-H "$AUTH" '


def _upload(var: str, path: str) -> str:
    return (
        f'{var}="$(call "200 201" -X POST "$BASE_URL/api/v1/attachments" -H "$AUTH" '
        f'-H "Idempotency-Key: $(new_key)" -F {shlex.quote("file=@" + path)} | field id)"\n'
    )


def _create(spec: CallSpec, args: str) -> str:
    return (
        f'RUN="$(call "200 201" -X POST "$BASE_URL{spec.create_path}" {_auth(spec)}\\\n  {args})"\n'
    )


def _json_call(spec: CallSpec) -> str:
    params = dict(spec.params)
    for f in spec.files:
        params[f.name] = _FILE_MARK.format(f.name)
    body = json.dumps(spec.json_body(params), indent=2)
    # printf reads backslashes and percent signs in its format: escape both.
    template = body.replace("\\", "\\\\").replace("%", "%%")
    args = []
    lines = ""
    for i, f in enumerate(spec.files):
        var = f"ATT_{i}"
        lines += _upload(var, f.path)
        template = template.replace(json.dumps(_FILE_MARK.format(f.name)), '"%s"')
        args.append(f'"${var}"')
    printf_args = "".join(f" {a}" for a in args)
    lines += f'PAYLOAD="$(printf {shlex.quote(template)}{printf_args})"\n'
    return lines + _create(
        spec,
        '-H "Content-Type: application/json" -H "Idempotency-Key: $(new_key)" \\\n'
        '  --data-binary "$PAYLOAD"',
    )


def _multipart_call(spec: CallSpec) -> str:
    parts = ['-H "Idempotency-Key: $(new_key)"']
    parts += [f"--form-string {shlex.quote('input_text=' + spec.input_text)}"]
    parts += [f"--form-string {shlex.quote(f'{k}={v}')}" for k, v in spec.form.items()]
    parts += [f"-F {shlex.quote(f'{f.name}=@{f.path}')}" for f in spec.files]
    return _create(spec, " \\\n  ".join(parts))


def render(spec: CallSpec) -> str:
    """The bash script for this call."""
    head = _HEAD.format(auth=_KEYLESS if spec.keyless else _KEYED, base=spec.base_url)
    call = _multipart_call(spec) if spec.variant == "multipart" else _json_call(spec)
    poll = _POLL.format(read=_READ_KEYLESS if spec.keyless else _READ_KEYED)
    return f"{head}\n{call}\n{poll}"
