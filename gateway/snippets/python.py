"""Python with requests."""

import pprint

from gateway.snippets.model import CallSpec

_HEAD = '''"""Runs the workflow and waits for its result. pip install requests"""

import json
import os
import sys
import uuid

import requests

BASE_URL = os.environ.get("WEFT_BASE_URL", {base!r})
{auth}TERMINAL = {{"completed", "failed", "canceled"}}


def check(response: requests.Response, *expected: int) -> dict:
    """The `data` of the answer; exits with the error envelope on any other status."""
    if response.status_code not in expected:
        sys.exit(f"HTTP {{response.status_code}}: {{response.text}}")
    return response.json()["data"]

'''

_UPLOAD = '''
def upload(path: str) -> str:
    """Uploads a local file; answers its attachment id."""
    with open(path, "rb") as f:
        response = requests.post(
            f"{BASE_URL}/api/v1/attachments",
            headers={**HEADERS, "Idempotency-Key": str(uuid.uuid4())},
            files={"file": (os.path.basename(path), f)},
            timeout=120,
        )
    return check(response, 200, 201)["id"]

'''

_KEYED = """API_KEY = os.environ["WEFT_API_KEY"]  # wft_live_...
HEADERS = {"Authorization": f"Bearer {API_KEY}"}
"""
_KEYLESS = """HEADERS: dict[str, str] = {}  # a public endpoint: no API key
"""

# Where the run is read, and with which token.
_READ_KEYED = """poll_url = f"{BASE_URL}/api/v1/workflow-runs/{run['id']}"
poll_headers = HEADERS
"""
_READ_KEYLESS = """# The answer's run token reads this one run.
poll_url = run["links"]["self"]
poll_headers = {"Authorization": f"Bearer {run.pop('run_token')}"}
"""

_POLL = """
# Long-poll: each call returns as soon as the status changes (or after 30 s).
while run["status"] not in TERMINAL:
    print(f"run {run['id']}: {run['status']}", file=sys.stderr)
    response = requests.get(poll_url, params={"wait": 30}, headers=poll_headers, timeout=60)
    run = check(response, 200)

print(json.dumps(run, indent=2))
sys.exit(0 if run["status"] == "completed" else 1)
"""


def _literal(value: object, indent: int) -> str:
    text = pprint.pformat(value, indent=1, width=88 - indent, sort_dicts=False)
    return text.replace("\n", "\n" + " " * indent)


def _json_call(spec: CallSpec) -> str:
    lines = f"params = {_literal(spec.params, 9)}\n"
    for f in spec.files:
        lines += f"params[{f.name!r}] = upload({f.path!r})\n"
    # The endpoint's body is flat: the fields next to input_text.
    body = "**params" if spec.keyless else '"params": params'
    lines += (
        "response = requests.post(\n"
        f'    f"{{BASE_URL}}{spec.create_path}",\n'
        '    headers={**HEADERS, "Idempotency-Key": str(uuid.uuid4())},\n'
        f'    json={{"input_text": {spec.input_text!r}, {body}}},\n'
        "    timeout=60,\n"
        ")\n"
    )
    return lines


def _multipart_call(spec: CallSpec) -> str:
    # Every part goes in `files` so requests sends multipart/form-data even without files.
    parts = [
        f"    {k!r}: (None, {v!r}),"
        for k, v in {"input_text": spec.input_text, **spec.form}.items()
    ]
    parts += [
        f'    {f.name!r}: (os.path.basename({f.path!r}), open({f.path!r}, "rb")),'
        for f in spec.files
    ]
    joined = "\n".join(parts)
    return (
        f"parts = {{\n{joined}\n}}\n"
        "response = requests.post(\n"
        f'    f"{{BASE_URL}}{spec.create_path}",\n'
        '    headers={**HEADERS, "Idempotency-Key": str(uuid.uuid4())},\n'
        "    files=parts,\n"
        "    timeout=120,\n"
        ")\n"
    )


def render(spec: CallSpec) -> str:
    """The Python script for this call."""
    head = _HEAD.format(base=spec.base_url, auth=_KEYLESS if spec.keyless else _KEYED)
    if spec.files and spec.variant == "json":
        head += _UPLOAD
    call = _multipart_call(spec) if spec.variant == "multipart" else _json_call(spec)
    read = _READ_KEYLESS if spec.keyless else _READ_KEYED
    return f"{head}\n{call}run = check(response, 200, 201)\n{read}{_POLL}"
