"""PHP in a Laravel app, with the Http facade (e.g. an artisan command or a job)."""

from typing import Any

from gateway.snippets.model import CallSpec

_HEAD = """<?php
// Runs the workflow and waits for its result, inside a Laravel app (Http facade).
{auth}
use Illuminate\\Support\\Facades\\Http;
use Illuminate\\Support\\Str;

$baseUrl = env('WEFT_BASE_URL', {base});
{key}$terminal = ['completed', 'failed', 'canceled'];

"""
_KEYED_NOTE = "// Put WEFT_API_KEY (and optionally WEFT_BASE_URL) in your .env.\n"
_KEYED_KEY = (
    "$apiKey = env('WEFT_API_KEY'); // wft_live_..., sent by withToken() as"
    " `Authorization: Bearer`\n"
)
_KEYLESS_NOTE = "// A public endpoint: no API key. Optionally put WEFT_BASE_URL in your .env.\n"

# How a request starts: with the API key, or without one (a public endpoint's call).
_KEYED_REQUEST = "Http::withToken($apiKey)\n    ->acceptJson()\n"
_KEYLESS_REQUEST = "Http::acceptJson()\n"

_CREATED = """
if (!in_array($response->status(), [200, 201], true)) {
    throw new RuntimeException('HTTP ' . $response->status() . ': ' . $response->body());
}
$run = $response->json('data');
"""

# Where the run is read, and with which token.
_READ_KEYED = """$pollUrl = "{$baseUrl}/api/v1/workflow-runs/{$run['id']}";
$pollToken = $apiKey;
"""
_READ_KEYLESS = """// The answer's run token reads this one run (sent as `Authorization: Bearer`).
$pollUrl = $run['links']['self'];
$pollToken = $run['run_token'];
unset($run['run_token']);
"""

_POLL = """
// Long-poll: each call returns as soon as the status changes (or after 30 s).
while (!in_array($run['status'], $terminal, true)) {
    $response = Http::withToken($pollToken)
        ->acceptJson()
        ->timeout(60)
        ->get($pollUrl, ['wait' => 30]);
    if ($response->status() !== 200) {
        throw new RuntimeException('HTTP ' . $response->status() . ': ' . $response->body());
    }
    $run = $response->json('data');
}

echo json_encode($run, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES), PHP_EOL;
if ($run['status'] !== 'completed') {
    throw new RuntimeException("Run {$run['id']} ended {$run['status']}.");
}
"""


def php(value: Any, indent: int = 0) -> str:
    """A PHP literal for a JSON value (empty objects stay objects when JSON-encoded)."""
    pad = "    " * (indent + 1)
    end = "    " * indent
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + "".join(f"{pad}{php(v, indent + 1)},\n" for v in value) + end + "]"
    if not value:
        return "(object) []"
    items = "".join(f"{pad}{php(str(k))} => {php(v, indent + 1)},\n" for k, v in value.items())
    return "[\n" + items + end + "]"


def _upload(var: str, path: str) -> str:
    return (
        f"${var} = Http::withToken($apiKey)\n"
        "    ->acceptJson()\n"
        "    ->withHeaders(['Idempotency-Key' => (string) Str::uuid()])\n"
        f"    ->attach('file', fopen({php(path)}, 'r'), basename({php(path)}))\n"
        '    ->post("{$baseUrl}/api/v1/attachments")\n'
        "    ->throw()\n"
        "    ->json('data.id');\n"
    )


def _request(spec: CallSpec) -> str:
    return _KEYLESS_REQUEST if spec.keyless else _KEYED_REQUEST


def _json_call(spec: CallSpec) -> str:
    lines = f"$params = {php(spec.params)};\n"
    for i, f in enumerate(spec.files):
        lines += _upload(f"attachment{i}", f.path)
        lines += f"$params[{php(f.name)}] = $attachment{i};\n"
    if (spec.files or spec.keyless) and not spec.params:  # an array to add to
        lines = lines.replace("$params = (object) [];", "$params = [];", 1)
    input_text = f"'input_text' => {php(spec.input_text)}"
    if spec.keyless:  # the endpoint's body is flat: the fields next to input_text
        body = f"array_merge([{input_text}], $params)"
    else:
        body = f"[\n        {input_text},\n        'params' => $params,\n    ]"
    return lines + (
        f"\n$response = {_request(spec)}"
        "    ->withHeaders(['Idempotency-Key' => (string) Str::uuid()])\n"
        f'    ->post("{{$baseUrl}}{spec.create_path}", {body});\n'
    )


def _multipart_call(spec: CallSpec) -> str:
    form = {"input_text": spec.input_text, **spec.form}
    request = (
        f"$response = {_request(spec)}"
        "    ->asMultipart()\n"
        "    ->withHeaders(['Idempotency-Key' => (string) Str::uuid()])\n"
    )
    for f in spec.files:
        request += (
            f"    ->attach({php(f.name)}, fopen({php(f.path)}, 'r'), basename({php(f.path)}))\n"
        )
    return request + (f'    ->post("{{$baseUrl}}{spec.create_path}", {php(form, 1)});\n')


def render(spec: CallSpec) -> str:
    """The PHP (Laravel) code for this call."""
    head = _HEAD.format(
        base=php(spec.base_url),
        auth=_KEYLESS_NOTE if spec.keyless else _KEYED_NOTE,
        key="" if spec.keyless else _KEYED_KEY,
    )
    call = _multipart_call(spec) if spec.variant == "multipart" else _json_call(spec)
    read = _READ_KEYLESS if spec.keyless else _READ_KEYED
    return f"{head}{call}{_CREATED}{read}{_POLL}"
