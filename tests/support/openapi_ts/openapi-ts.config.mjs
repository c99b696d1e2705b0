// @hey-api/openapi-ts, run by tests/integration/test_openapi_generators.py in a work folder
// holding openapi.json (the served document): strict validation, the fetch client, types
// and the SDK. Any warning it prints fails the test.
import { defineConfig } from "@hey-api/openapi-ts";

export default defineConfig({
  input: "./openapi.json",
  output: { path: "./client", module: { extension: ".js" } },
  parser: { validate_EXPERIMENTAL: "strict" },
  plugins: ["@hey-api/client-fetch", "@hey-api/typescript", "@hey-api/sdk"],
  logs: { file: false },
});
