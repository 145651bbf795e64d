// The warmpool HTTP API over Node's built-in fetch: one-shot execute, held leases (exec,
// files, release), pool stats, health. Every error answer becomes a typed WarmpoolError.
import { ExecTimeoutError, StillRunningError, UnreachableError, WarmpoolError, errorFor } from "./errors.js";
import { Lease } from "./lease.js";
import { ExecStream, eventsOfResult } from "./stream.js";
import {
  type AcquireOptions,
  type CodeResult,
  type Command,
  type Duration,
  type ExecOptions,
  type ExecResult,
  type ExecuteOptions,
  type Health,
  type LeaseInfo,
  type PoolStats,
  type ProcessInfo,
  type ProcessOptions,
  type ProcessOutput,
  type ShellInfo,
  execBody,
  routingBody,
  toCodeResult,
  toExecResult,
  toLeaseInfo,
  toPoolStats,
  toProcessInfo,
  toProcessOutput,
  toShellInfo,
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
    if (options.shell !== undefined) body.shell = options.shell;
    return toExecResult(await this.#json("POST", "/v1/execute", { body }));
  }

  /**
   * execute() with the output as it comes: an ExecStream (async iterator) of output events
   * and a last exit event; a timed-out command ends with `timedOut` set. Errors before the
   * command starts reject here. Leaving the stream early stops the command.
   */
  async executeStream(command: Command, options: ExecuteOptions = {}): Promise<ExecStream> {
    const body = { ...execBody(command, options), ...routingBody(options) };
    if (options.shell !== undefined) body.shell = options.shell;
    return this.#stream("POST", "/v1/execute", { body });
  }

  // -- leases --------------------------------------------------------------

  /** Acquires a sandbox and holds it until release() (or `await using` leaves scope). */
  async acquire(options: AcquireOptions = {}): Promise<Lease> {
    const body = routingBody(options);
    if (options.timeout !== undefined) body.timeout = options.timeout;
    if (options.env !== undefined) body.env = options.env;
    if (options.files !== undefined) body.files = options.files;
    if (options.cwd !== undefined) body.cwd = options.cwd;
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

  async execStream(leaseId: string, command: Command, options: ExecOptions = {}): Promise<ExecStream> {
    return this.#stream("POST", leasePath(leaseId, "/exec"), { body: execBody(command, options) });
  }

  // -- shells, code contexts and processes of a lease (Lease, Shell, Context, Process call these)

  /** Opens a persistent shell in the lease; resolves to its id (`name`, or the server's). */
  async openShell(leaseId: string, name?: string): Promise<string> {
    const body = name === undefined ? undefined : { name };
    return String((await this.#json("POST", leasePath(leaseId, "/shells"), { body })).id ?? "");
  }

  async shellRun(leaseId: string, shell: string, command: string, timeout?: Duration): Promise<ExecResult> {
    return toExecResult(await this.#json("POST", shellPath(leaseId, shell, "/exec"), { body: shellBody(command, timeout) }));
  }

  async shellStream(leaseId: string, shell: string, command: string, timeout?: Duration): Promise<ExecStream> {
    return this.#stream("POST", shellPath(leaseId, shell, "/exec"), { body: shellBody(command, timeout) });
  }

  async closeShell(leaseId: string, shell: string): Promise<void> {
    await this.#request("DELETE", shellPath(leaseId, shell));
  }

  /** The lease's shells, by id. */
  shells(leaseId: string): Promise<ShellInfo[]> {
    return this.#listed(leaseId, "shells");
  }

  /** The lease's code contexts, by id. */
  contexts(leaseId: string): Promise<ShellInfo[]> {
    return this.#listed(leaseId, "contexts");
  }

  async #listed(leaseId: string, collection: "shells" | "contexts"): Promise<ShellInfo[]> {
    const answer = (await this.#json("GET", leasePath(leaseId, `/${collection}`))) as Record<string, unknown[] | undefined>;
    return (answer[collection] ?? []).map((w) => toShellInfo(w as Record<string, unknown>));
  }

  /** Opens a stateful Python code context in the lease; resolves to its id (`name`, or the server's). */
  async openContext(leaseId: string, name?: string): Promise<string> {
    const body = name === undefined ? undefined : { name };
    return String((await this.#json("POST", leasePath(leaseId, "/contexts"), { body })).id ?? "");
  }

  /** Runs Python `code` in the context; an exception in it is the result's `error`. */
  async runCode(leaseId: string, context: string, code: string, timeout?: Duration): Promise<CodeResult> {
    const body = timeout === undefined ? { code } : { code, timeout };
    return toCodeResult(await this.#json("POST", contextPath(leaseId, context, "/run"), { body }));
  }

  async closeContext(leaseId: string, context: string): Promise<void> {
    await this.#request("DELETE", contextPath(leaseId, context));
  }

  /** Starts a background process in the lease; resolves to its id. */
  async startProcess(leaseId: string, command: Command, options: ProcessOptions = {}): Promise<string> {
    const body = execBody(command, options);
    if (options.tty) Object.assign(body, { tty: true, cols: options.cols ?? 80, rows: options.rows ?? 24 });
    return String((await this.#json("POST", leasePath(leaseId, "/processes"), { body })).id ?? "");
  }

  async processes(leaseId: string): Promise<ProcessInfo[]> {
    const answer = (await this.#json("GET", leasePath(leaseId, "/processes"))) as { processes?: unknown[] };
    return (answer.processes ?? []).map((p) => toProcessInfo(p as Record<string, unknown>));
  }

  /** Output after byte `offset` (stdout) / `stderrOffset`; `waitMs`: wait that long for some. */
  async processOutput(
    leaseId: string,
    pid: string,
    o: { offset?: number; stderrOffset?: number; waitMs?: number } = {},
  ): Promise<ProcessOutput> {
    const query: Query = { offset: String(o.offset ?? 0), stderr_offset: String(o.stderrOffset ?? 0) };
    if (o.waitMs !== undefined) query.wait = String(o.waitMs);
    return toProcessOutput(await this.#json("GET", processPath(leaseId, pid, "/output"), { query }));
  }

  async followProcess(leaseId: string, pid: string, o: { offset?: number; stderrOffset?: number } = {}): Promise<ExecStream> {
    const query: Query = { follow: "true", offset: String(o.offset ?? 0), stderr_offset: String(o.stderrOffset ?? 0) };
    return this.#stream("GET", processPath(leaseId, pid, "/output"), { query });
  }

  /** Writes to the process's stdin (at most 1 MiB a call); `close` closes it after. */
  async writeStdin(leaseId: string, pid: string, data: string | Uint8Array, close = false): Promise<number> {
    const raw = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const query = close ? { close: "true" } : undefined;
    const answer = await this.#request("POST", processPath(leaseId, pid, "/stdin"), { raw, query });
    const n = (JSON.parse(new TextDecoder().decode(answer.body) || "{}") as { bytes?: unknown }).bytes;
    return typeof n === "number" ? n : raw.length;
  }

  async signalProcess(leaseId: string, pid: string, signal: string | number = "TERM"): Promise<void> {
    await this.#request("POST", processPath(leaseId, pid, "/signal"), { body: { signal } });
  }

  async resizeProcess(leaseId: string, pid: string, cols: number, rows: number): Promise<void> {
    await this.#request("POST", processPath(leaseId, pid, "/resize"), { body: { cols, rows } });
  }

  /** Waits for the exit; StillRunningError when it still runs after `timeout` (nothing killed). */
  async waitProcess(leaseId: string, pid: string, timeout: Duration = 30_000): Promise<ExecResult> {
    try {
      return toExecResult(await this.#json("POST", processPath(leaseId, pid, "/wait"), { body: { timeout } }));
    } catch (e) {
      if (e instanceof ExecTimeoutError && !(e instanceof StillRunningError))
        throw new StillRunningError({ status: e.status, code: e.code, message: e.message, body: e.body, result: toExecResult({}) });
      throw e;
    }
  }

  /** Kills the process if it runs and forgets it. */
  async forgetProcess(leaseId: string, pid: string): Promise<void> {
    await this.#request("DELETE", processPath(leaseId, pid));
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

  /** A request answered as a stream: resolves once the status came (errors reject here). */
  async #stream(method: string, path: string, opts: { body?: unknown; query?: Query | undefined }): Promise<ExecStream> {
    let url = this.url + path;
    if (opts.query) url += "?" + new URLSearchParams(opts.query).toString();
    const headers: Record<string, string> = { Accept: "application/x-ndjson" };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    if (this.#token) headers["Authorization"] = `Bearer ${this.#token}`;
    const abort = new AbortController();
    const where = `${method} ${url}`;
    // The client's timeout bounds the wait for the answer's start, not the stream.
    const timer = setTimeout(() => abort.abort(new DOMException("timeout", "TimeoutError")), this.#timeoutMs);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: opts.body === undefined ? null : JSON.stringify(opts.body),
        signal: abort.signal,
      });
    } catch (e) {
      const why = abort.signal.aborted ? `no answer within ${this.#timeoutMs} ms` : describeFailure(e);
      throw new UnreachableError({ status: 0, code: "unreachable", message: `${where}: ${why}`, cause: e });
    } finally {
      clearTimeout(timer);
    }
    if (!res.ok) throw toError(res, new Uint8Array(await res.arrayBuffer()));
    if ((res.headers.get("Content-Type") ?? "").startsWith("application/json")) {
      const whole = JSON.parse(await res.text()) as Record<string, unknown>;
      return new ExecStream(res, abort, where, eventsOfResult(whole));
    }
    return new ExecStream(res, abort, where);
  }

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

function shellPath(leaseId: string, shell: string, suffix = ""): string {
  return leasePath(leaseId, `/shells/${encodeURIComponent(shell)}${suffix}`);
}

function contextPath(leaseId: string, context: string, suffix = ""): string {
  return leasePath(leaseId, `/contexts/${encodeURIComponent(context)}${suffix}`);
}

function processPath(leaseId: string, pid: string, suffix = ""): string {
  return leasePath(leaseId, `/processes/${encodeURIComponent(pid)}${suffix}`);
}

function shellBody(command: string, timeout?: Duration): Record<string, unknown> {
  return timeout === undefined ? { command } : { command, timeout };
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
