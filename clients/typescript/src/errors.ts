// Typed errors: one class per `error.code` of the API (docs/openapi.yaml), so callers can
// `catch (e) { if (e instanceof PoolExhaustedError) ... }` instead of comparing strings.
import type { ExecResult } from "./types.js";

/** Every error code the API documents, plus the client's own for answers that never came. */
export type ErrorCode =
  | "invalid_request"
  | "unknown_pool"
  | "unknown_lease"
  | "not_found"
  | "unauthorized"
  | "payload_too_large"
  | "too_large"
  | "conflict"
  | "shell_exited"
  | "pool_exhausted"
  | "backend_unavailable"
  | "shutting_down"
  | "container_failed"
  | "node_lost"
  | "exec_timeout"
  | "not_ready"
  | "config_invalid"
  | "internal"
  | "http_error" // an error answer without the API's error envelope (e.g. a proxy's page)
  | "unreachable"; // no HTTP answer at all: connection refused, reset, or the client's timeout

export interface WarmpoolErrorInit {
  status: number;
  code: string;
  message: string;
  /** Seconds from the `Retry-After` header (503 answers carry one). */
  retryAfter?: number | undefined;
  body?: unknown;
  cause?: unknown;
}

/** An error answer of the API: HTTP status plus the error envelope's code and message. */
export class WarmpoolError extends Error {
  /** HTTP status; 0 when the server gave no answer (see UnreachableError). */
  readonly status: number;
  /** The API's stable error name, e.g. "pool_exhausted". */
  readonly code: ErrorCode | string;
  /** Seconds the server asked callers to wait before retrying, when it said. */
  readonly retryAfter: number | undefined;
  /** The parsed answer body (the error envelope, or the partial result of a timed-out exec). */
  readonly body: unknown;

  constructor(init: WarmpoolErrorInit) {
    const prefix = init.status ? `HTTP ${init.status} ${init.code}` : init.code;
    super(`${prefix}: ${init.message}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.status = init.status;
    this.code = init.code;
    this.retryAfter = init.retryAfter;
    this.body = init.body;
  }
}

/** 400: malformed request, a missing or wrong-typed field (the message names it). */
export class InvalidRequestError extends WarmpoolError {}
/** 401: missing or wrong bearer token. */
export class UnauthorizedError extends WarmpoolError {}
/** 404 `not_found`: no shell, context or process with that id in the lease, or no route at that path. */
export class NotFoundError extends WarmpoolError {}
/** 404: no pool of that name (on that node). */
export class UnknownPoolError extends NotFoundError {}
/** 404: the lease id is unknown, released, or expired after lease_ttl untouched. */
export class UnknownLeaseError extends NotFoundError {}
/** 413: the request body exceeds the server's max_body. */
export class PayloadTooLargeError extends WarmpoolError {}
/** 413 `too_large`: more data than the operation takes (a stdin write over 1 MiB). */
export class TooLargeError extends PayloadTooLargeError {}
/** 409 `conflict`: stdin written after close or after the process ended; a shell or context still busy. */
export class ConflictError extends WarmpoolError {}
/** 409 `shell_exited`: the shell's or context's own process ended (`exit`, killed): open it again. */
export class ShellExitedError extends ConflictError {}
/** 503 family: the server asks to retry later (`retryAfter` seconds). */
export class UnavailableError extends WarmpoolError {}
/** 503: no sandbox became free before the acquire deadline. */
export class PoolExhaustedError extends UnavailableError {}
/** 503: the pool's backend (dockerd, bubblewrap) cannot be used right now. */
export class BackendUnavailableError extends UnavailableError {}
/** 503: the server is stopping. */
export class ShuttingDownError extends UnavailableError {}
/** 503 from /readyz: pools are still warming. */
export class NotReadyError extends UnavailableError {}
/** 502: the sandbox died or misbehaved during the operation. */
export class ContainerFailedError extends WarmpoolError {}
/** 502: the cluster node holding the sandbox became unreachable; the lease is lost. */
export class NodeLostError extends ContainerFailedError {}
/** 500: the server's configuration is invalid. */
export class ConfigInvalidError extends WarmpoolError {}
/** 500: an unexpected server-side failure. */
export class InternalError extends WarmpoolError {}
/** No HTTP answer: connection refused or reset, or the client's own timeout passed. */
export class UnreachableError extends WarmpoolError {}

/**
 * 504: the command exceeded its timeout and its process group was killed. `result` holds the
 * output produced until then (`timedOut` is true).
 */
export class ExecTimeoutError extends WarmpoolError {
  readonly result: ExecResult;
  constructor(init: WarmpoolErrorInit & { result: ExecResult }) {
    super(init);
    this.result = init.result;
  }
}

/**
 * 504 from Process.wait: the process still runs after the wait's timeout (nothing was
 * killed). `result` is empty.
 */
export class StillRunningError extends ExecTimeoutError {}

type ErrorClass = new (init: WarmpoolErrorInit) => WarmpoolError;

const byCode: Record<string, ErrorClass> = {
  invalid_request: InvalidRequestError,
  unauthorized: UnauthorizedError,
  not_found: NotFoundError,
  unknown_pool: UnknownPoolError,
  unknown_lease: UnknownLeaseError,
  payload_too_large: PayloadTooLargeError,
  too_large: TooLargeError,
  conflict: ConflictError,
  shell_exited: ShellExitedError,

  pool_exhausted: PoolExhaustedError,
  backend_unavailable: BackendUnavailableError,
  shutting_down: ShuttingDownError,
  not_ready: NotReadyError,
  container_failed: ContainerFailedError,
  node_lost: NodeLostError,
  config_invalid: ConfigInvalidError,
  internal: InternalError,
};

/** The class for an error code; a code this client does not know yet stays a WarmpoolError. */
export function errorFor(init: WarmpoolErrorInit): WarmpoolError {
  const cls = byCode[init.code] ?? (init.status === 503 ? UnavailableError : WarmpoolError);
  return new cls(init);
}

const statusByCode: Record<string, number> = {
  invalid_request: 400,
  unauthorized: 401,
  not_found: 404,
  unknown_pool: 404,
  unknown_lease: 404,
  conflict: 409,
  shell_exited: 409,
  payload_too_large: 413,
  too_large: 413,
  container_failed: 502,
  node_lost: 502,
  pool_exhausted: 503,
  backend_unavailable: 503,
  shutting_down: 503,
  not_ready: 503,
  exec_timeout: 504,
};

/** The HTTP status the server answers an error code with (for errors inside a stream). */
export function statusOf(code: string): number {
  return statusByCode[code] ?? 500;
}
