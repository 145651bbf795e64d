// The warmpool HTTP API over Node's built-in fetch: one-shot execute, held leases (exec,
// files, release), pool stats, health. Every error answer becomes a typed WarmpoolError.
import { ExecTimeoutError, UnreachableError, WarmpoolError, errorFor } from "./errors.js";
import { Lease } from "./lease.js";
import {
  type AcquireOptions,
  type Command,
  type ExecOptions,
  type ExecResult,
  type ExecuteOptions,
  type Health,
  type LeaseInfo,
  type PoolStats,
  execBody,
  routingBody,
  toExecResult,
  toLeaseInfo,
  toPoolStats,
} from "./types.js";

export interface ClientOptions {
  /** Base URL of `warmpool serve` (default http://127.0.0.1:8080). */
  url?: string;
  /** Bearer token, when the server requires one (server.token / WARMPOOL_TOKEN). */
  token?: string;
  /**
   * Milliseconds to wait for any one answer (default 60000). Keep it above the longest exec
   * timeout and acquire timeout you ask for: the server answers only when those pass.
   */
  timeoutMs?: number;
}

interface Answer {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

type Query = Record<string, string>;

export class Client {
  readonly url: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;

  constructor(options: ClientOptions = {}) {
    this.url = (options.url ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
    this.#token = options.token;
    this.#timeoutMs = options.timeoutMs ?? 60_000;
  }

  // -- one-shot ------------------------------------------------------------

  /**
   * Runs `command` in a pooled sandbox (acquire, exec, release). A non-zero exit is a normal
   * result; a command over its timeout throws ExecTimeoutError carrying the partial output.
   */
  async execute(command: Command, options: ExecuteOptions = {}): Promise<ExecResult> {
    const body = { ...execBody(command, options), ...routingBody(options) };
    return toExecResult(await this.#json("POST", "/v1/execute", { body }));
  }

  // -- leases --------------------------------------------------------------

  /** Acquires a sandbox and holds it until release() (or `await using` leaves scope). */
  async acquire(options: AcquireOptions = {}): Promise<Lease> {
    const body = routingBody(options);
    if (options.timeout !== undefined) body.timeout = options.timeout;
    return new Lease(this, toLeaseInfo(await this.#json("POST", "/v1/leases", { body })));
  }

  /** Acquires a sandbox, runs `fn` with it, and releases it whatever `fn` does. */
  async withLease<T>(options: AcquireOptions, fn: (lease: Lease) => Promise<T> | T): Promise<T> {
    const lease = await this.acquire(options);
    try {
      return await fn(lease);
    } finally {
      await lease.release();
    }
  }

  /** Describes a lease (and refreshes its TTL: a heartbeat). */
  async lease(leaseId: string): Promise<LeaseInfo> {
    return toLeaseInfo(await this.#json("GET", leasePath(leaseId)));
  }

  async exec(leaseId: string, command: Command, options: ExecOptions = {}): Promise<ExecResult> {
    const body = execBody(command, options);
    return toExecResult(await this.#json("POST", leasePath(leaseId, "/exec"), { body }));
  }

  async putFile(leaseId: string, path: string, data: string | Uint8Array): Promise<void> {
    const raw = typeof data === "string" ? new TextEncoder().encode(data) : data;
    await this.#request("PUT", leasePath(leaseId, "/files"), { raw, query: { path } });
  }

  async getFile(leaseId: string, path: string): Promise<Uint8Array> {
    return (await this.#request("GET", leasePath(leaseId, "/files"), { query: { path } })).body;
  }

  /** Gives the sandbox back; `dirty`: do not reuse it (it is replaced instead of reset). */
  async release(leaseId: string, dirty = false): Promise<void> {
    await this.#request("DELETE", leasePath(leaseId), dirty ? { query: { dirty: "true" } } : {});
  }

  // -- introspection -------------------------------------------------------

  async pools(): Promise<PoolStats[]> {
    const answer = (await this.#json("GET", "/v1/pools")) as { pools?: unknown[] };
    return (answer.pools ?? []).map((p) => toPoolStats(p as Record<string, unknown>));
  }

  /** One pool's stats with a row per sandbox; `node` picks a cluster node's row. */
  async pool(name: string, node?: string): Promise<PoolStats> {
    const query = node === undefined ? undefined : { node };
    return toPoolStats(await this.#json("GET", `/v1/pools/${encodeURIComponent(name)}`, { query }));
  }

  /** Liveness (needs no token). */
  async health(): Promise<Health> {
    return (await this.#json("GET", "/healthz")) as unknown as Health;
  }

  /** Readiness: resolves once every pool has warmed; NotReadyError while warming. */
  async ready(): Promise<boolean> {
    return (await this.#json("GET", "/readyz")).ready === true;
  }

  /** The Prometheus exposition text of /metrics. */
  async metrics(): Promise<string> {
    return new TextDecoder().decode((await this.#request("GET", "/metrics")).body);
  }

  // -- transport -----------------------------------------------------------

  async #json(
    method: string,
    path: string,
    opts: { body?: unknown; query?: Query | undefined } = {},
  ): Promise<Record<string, unknown>> {
    const answer = await this.#request(method, path, opts);
    if (answer.body.length === 0) return {};
    return JSON.parse(new TextDecoder().decode(answer.body)) as Record<string, unknown>;
  }

  async #request(
    method: string,
    path: string,
    opts: { body?: unknown; raw?: Uint8Array; query?: Query | undefined } = {},
  ): Promise<Answer> {
    let url = this.url + path;
    if (opts.query) url += "?" + new URLSearchParams(opts.query).toString();
    const headers: Record<string, string> = {};
    let payload: Uint8Array | string | undefined;
    if (opts.raw !== undefined) {
      payload = opts.raw;
      headers["Content-Type"] = "application/octet-stream";
    } else if (opts.body !== undefined) {
      payload = JSON.stringify(opts.body);
      headers["Content-Type"] = "application/json";
    }
    if (this.#token) headers["Authorization"] = `Bearer ${this.#token}`;

    let res: Response;
    let body: Uint8Array;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: (payload ?? null) as BodyInit | null,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      body = new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      const why = e instanceof Error && e.name === "TimeoutError"
        ? `no answer within ${this.#timeoutMs} ms`
        : describeFailure(e);
      throw new UnreachableError({ status: 0, code: "unreachable", message: `${method} ${url}: ${why}`, cause: e });
    }
    if (res.ok) return { status: res.status, headers: res.headers, body };
    throw toError(res, body);
  }
}

function leasePath(leaseId: string, suffix = ""): string {
  return `/v1/leases/${encodeURIComponent(leaseId)}${suffix}`;
}

/** fetch's "fetch failed" hides the reason in `cause` (ECONNREFUSED, ...). */
function describeFailure(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = (e as { cause?: unknown }).cause;
  if (cause instanceof Error) return `${e.message} (${(cause as { code?: string }).code ?? cause.message})`;
  return e.message;
}

function toError(res: Response, body: Uint8Array): WarmpoolError {
  const text = new TextDecoder().decode(body);
  const retry = Number.parseInt(res.headers.get("Retry-After") ?? "", 10);
  const retryAfter = Number.isFinite(retry) ? retry : undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const envelope = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  if (!envelope || typeof envelope.code !== "string") {
    const message = text.trim() || res.statusText || "error answer without a body";
    return errorFor({ status: res.status, code: "http_error", message, retryAfter, body: text });
  }
  const init = {
    status: res.status,
    code: envelope.code,
    message: typeof envelope.message === "string" ? envelope.message : "",
    retryAfter,
    body: parsed,
  };
  if (envelope.code === "exec_timeout")
    return new ExecTimeoutError({ ...init, result: toExecResult(parsed as Record<string, unknown>) });
  return errorFor(init);
}
