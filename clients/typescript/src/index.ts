// weftapi: the TypeScript client for the Weft API.
export { Weft, Workflows, Attachments, Runs, Endpoints, TERMINAL_STATUSES } from "./client.js";
export type { EventsOptions, Uploadable } from "./client.js";
export type { ClientOptions, RequestOptions, ResponseInfo, WithResponse } from "./http.js";
export {
  WeftError,
  WeftAPIError,
  BadRequestError,
  AuthenticationError,
  PaymentRequiredError,
  PermissionDeniedError,
  NotFoundError,
  ConflictError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
  RateLimitError,
  InternalServerError,
  ServiceUnavailableError,
  WeftConnectionError,
  WeftTimeoutError,
  RunTimeoutError,
} from "./errors.js";
export type { ErrorCode, ErrorBody } from "./errors.js";
export type * from "./types.js";
export type { components, operations, paths, webhooks } from "./schema.js";
export { VERSION } from "./version.js";
