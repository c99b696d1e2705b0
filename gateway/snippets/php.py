"""PHP in a Laravel app, with the Http facade (e.g. an artisan command or a job)."""

from typing import Any

from gateway.snippets.model import CallSpec

_HEAD = """<?php
// Runs the workflow and waits for its result, inside a Laravel app (Http facade).
// Put WEFT_API_KEY (and optionally WEFT_BASE_URL) in your .env.

use Illuminate\\Support\\Facades\\Http;
use Illuminate\\Support\\Str;

$baseUrl = env('WEFT_BASE_URL', {base});
$apiKey = env('WEFT_API_KEY'); // wft_live_..., sent by withToken() as `Authorization: Bearer`
$terminal = ['completed', 'failed', 'canceled'];

"""

_POLL = """
if (!in_array($response->status(), [200, 201], true)) {
    throw new RuntimeException('HTTP ' . $response->status() . ': ' . $response->body());
}
$run = $response->json('data');

// Long-poll: each call returns as soon as the status changes (or after 30 s).
while (!in_array($run['status'], $terminal, true)) {
    $response = Http::withToken($apiKey)
        ->acceptJson()
        ->timeout(60)
        ->get("{$baseUrl}/api/v1/workflow-runs/{$run['id']}", ['wait' => 30]);
    if ($response->status() !== 200) {
        throw new RuntimeException('HTTP ' . $response->status() . ': ' . $response->body());
    }
    $run = $response->json('data');
}

echo json_encode($run, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES), PHP_EOL;
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


def _json_call(spec: CallSpec) -> str:
    lines = f"$params = {php(spec.params)};\n"
    for i, f in enumerate(spec.files):
        lines += _upload(f"attachment{i}", f.path)
        lines += f"$params[{php(f.name)}] = $attachment{i};\n"
    if spec.files and not spec.params:
        lines = lines.replace("$params = (object) [];", "$params = [];", 1)
    return lines + (
        "\n$response = Http::withToken($apiKey)\n"
        "    ->acceptJson()\n"
        "    ->withHeaders(['Idempotency-Key' => (string) Str::uuid()])\n"
        f'    ->post("{{$baseUrl}}/api/v1/workflows/{spec.workflow_id}/runs", [\n'
        f"        'input_text' => {php(spec.input_text)},\n"
        "        'params' => $params,\n"
        "    ]);\n"
    )


def _multipart_call(spec: CallSpec) -> str:
    form = {"input_text": spec.input_text, **spec.form}
    request = (
        "$response = Http::withToken($apiKey)\n"
        "    ->acceptJson()\n"
        "    ->asMultipart()\n"
        "    ->withHeaders(['Idempotency-Key' => (string) Str::uuid()])\n"
    )
    for f in spec.files:
        request += (
            f"    ->attach({php(f.name)}, fopen({php(f.path)}, 'r'), basename({php(f.path)}))\n"
        )
    return request + (
        f'    ->post("{{$baseUrl}}/api/v1/workflows/{spec.workflow_id}/runs", {php(form, 1)});\n'
    )


def render(spec: CallSpec) -> str:
    """The PHP (Laravel) code for this call."""
    head = _HEAD.format(base=php(spec.base_url))
    call = _multipart_call(spec) if spec.variant == "multipart" else _json_call(spec)
    return f"{head}{call}{_POLL}"
