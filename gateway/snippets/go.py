"""Go: one main.go with net/http and the standard library only."""

import json

from gateway.snippets.model import CallSpec

_HEAD = """// Runs the workflow and waits for its result: {usage}
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

var baseURL = envOr("WEFT_BASE_URL", {base})
{key}var client = &http.Client{{Timeout: 90 * time.Second}}

func envOr(name, fallback string) string {{
	if v := os.Getenv(name); v != "" {{
		return v
	}}
	return fallback
}}

// newKey is a random Idempotency-Key (a UUID v4).
func newKey() string {{
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {{
		panic(err)
	}}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}}

// call sends the request (with `token` as its bearer unless empty) and answers the `data`
// of the answer; exits on any other status.
func call(req *http.Request, token string, expected ...int) map[string]any {{
	if token != "" {{
		req.Header.Set("Authorization", "Bearer "+token)
	}}
	resp, err := client.Do(req)
	if err != nil {{
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	ok := false
	for _, status := range expected {{
		ok = ok || resp.StatusCode == status
	}}
	if !ok {{
		fmt.Fprintf(os.Stderr, "HTTP %d: %s\\n", resp.StatusCode, body)
		os.Exit(1)
	}}
	var envelope struct {{
		Data map[string]any `json:"data"`
	}}
	if err := json.Unmarshal(body, &envelope); err != nil {{
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}}
	return envelope.Data
}}

// addFile adds a local file as a multipart part.
func addFile(form *multipart.Writer, field, path string) {{
	f, err := os.Open(path)
	if err != nil {{
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}}
	defer f.Close()
	part, _ := form.CreateFormFile(field, filepath.Base(path))
	if _, err := io.Copy(part, f); err != nil {{
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}}
}}

// post sends a body to path with a fresh Idempotency-Key.
func post(path, contentType string, body io.Reader) map[string]any {{
	req, _ := http.NewRequest("POST", baseURL+path, body)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Idempotency-Key", newKey())
	return call(req, apiKey, 200, 201)
}}
"""

_UPLOAD = """
// upload sends a local file to /api/v1/attachments and answers its id.
func upload(path string) string {
	var buf bytes.Buffer
	form := multipart.NewWriter(&buf)
	addFile(form, "file", path)
	form.Close()
	return post("/api/v1/attachments", form.FormDataContentType(), &buf)["id"].(string)
}
"""

_KEYED_KEY = 'var apiKey = os.Getenv("WEFT_API_KEY") // wft_live_...\n'
_KEYLESS_KEY = 'const apiKey = "" // a public endpoint: no API key\n'

_KEYED_MAIN = """func main() {
	if apiKey == "" {
		fmt.Fprintln(os.Stderr, "Set WEFT_API_KEY to your API key.")
		os.Exit(2)
	}
"""
_KEYLESS_MAIN = "func main() {\n"

# Where the run is read, and with which token.
_READ_KEYED = """	pollURL := fmt.Sprintf("%s/api/v1/workflow-runs/%s", baseURL, run["id"])
	pollToken := apiKey
"""
_READ_KEYLESS = """	// The answer's run token reads this one run.
	pollURL := run["links"].(map[string]any)["self"].(string)
	pollToken := run["run_token"].(string)
	delete(run, "run_token")
"""

_POLL = """
	// Long-poll: each call returns as soon as the status changes (or after 30 s).
	for run["status"] != "completed" && run["status"] != "failed" && run["status"] != "canceled" {
		fmt.Fprintf(os.Stderr, "run %s: %s\\n", run["id"], run["status"])
		req, _ := http.NewRequest("GET", pollURL+"?wait=30", nil)
		run = call(req, pollToken, 200)
	}
	out, _ := json.MarshalIndent(run, "", "  ")
	fmt.Println(string(out))
	if run["status"] != "completed" {
		os.Exit(1)
	}
}
"""


def _go_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)  # a valid Go interpreted string literal


def _json_call(spec: CallSpec) -> str:
    params = json.dumps(spec.params, indent=2, ensure_ascii=False).replace("`", '` + "`" + `')
    lines = (
        "\tvar params map[string]any\n"
        f"\tif err := json.Unmarshal([]byte(`{params}`), &params); err != nil {{\n"
        "\t\tpanic(err)\n"
        "\t}\n"
    )
    for f in spec.files:
        lines += f"\tparams[{_go_string(f.name)}] = upload({_go_string(f.path)})\n"
    input_text = _go_string(spec.input_text)
    if spec.keyless:  # the endpoint's body is flat: the fields next to input_text
        lines += f'\tparams["input_text"] = {input_text}\n\tpayload, _ := json.Marshal(params)\n'
    else:
        lines += (
            "\tpayload, _ := json.Marshal(map[string]any{\n"
            f'\t\t"input_text": {input_text},\n'
            '\t\t"params":     params,\n'
            "\t})\n"
        )
    return lines + (
        f'\trun := post("{spec.create_path}", "application/json", bytes.NewReader(payload))\n'
    )


def _multipart_call(spec: CallSpec) -> str:
    lines = "\tvar buf bytes.Buffer\n\tform := multipart.NewWriter(&buf)\n"
    for name, value in {"input_text": spec.input_text, **spec.form}.items():
        lines += f"\tform.WriteField({_go_string(name)}, {_go_string(value)})\n"
    for f in spec.files:
        lines += f"\taddFile(form, {_go_string(f.name)}, {_go_string(f.path)})\n"
    return lines + (
        f'\tform.Close()\n\trun := post("{spec.create_path}", form.FormDataContentType(), &buf)\n'
    )


def render(spec: CallSpec) -> str:
    """main.go for this call."""
    head = _HEAD.format(
        base=_go_string(spec.base_url),
        usage="go run main.go" if spec.keyless else "WEFT_API_KEY=... go run main.go",
        key=_KEYLESS_KEY if spec.keyless else _KEYED_KEY,
    )
    if spec.files and spec.variant == "json":
        head += _UPLOAD
    call = _multipart_call(spec) if spec.variant == "multipart" else _json_call(spec)
    main = _KEYLESS_MAIN if spec.keyless else _KEYED_MAIN
    read = _READ_KEYLESS if spec.keyless else _READ_KEYED
    return f"{head}\n{main}{call}{read}{_POLL}"
