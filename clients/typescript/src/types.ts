// The API's request options and answers in TypeScript's spelling (camelCase), and the
// conversions from the wire's snake_case JSON (docs/openapi.yaml is the contract).

/** "500ms", "5s", "2m", or a number of milliseconds (at most 24h). */
export type Duration = string | number;
/** Bytes kept per output stream: a size like "64k", or a number. */
export type Size = string | number;
/**
 * Python source for the pool's warm interpreter (`interpreters.python`), run as
 * `python3 -c code` would: a forked child of an interpreter that already imported the pool's
 * `preload` modules. `language` is "python", the default and the only one there is.
 */
export interface Code {
  code: string;
  language?: "python";
}

/** An argv array (run directly), a string (run by /bin/sh -c), or `{ code }` (Python). */
export type Command = string[] | string | Code;

export interface ExecOptions {
  stdin?: string;
  env?: Record<string, string>;
  /** Working directory (default: the sandbox workspace). */
  cwd?: string;
  /** The command's time limit (default: the pool's exec_timeout). */
  timeout?: Duration;
  outputLimit?: Size;
}

export interface RoutingOptions {
  /** Explicit pool; otherwise the server routes by labels and session. */
  pool?: string;
  labels?: Record<string, string>;
  /** Sticky session: every request of a session runs in the same sandbox. */
  session?: string;
  tenant?: string;
}

export interface ExecuteOptions extends ExecOptions, RoutingOptions {
  /** With `session`: run the command (a string) in the session's shell of this name. */
  shell?: string;
}

export interface AcquireOptions extends RoutingOptions {
  /** How long to wait for a sandbox (default: the pool's acquire_timeout). */
  timeout?: Duration;
  /** Variables every command, shell and process of the lease sees (never logged). */
  env?: Record<string, string>;
  /** path -> text written into the sandbox before it is handed over (relative: the workspace). */
  files?: Record<string, string>;
  /** Working directory of the lease's commands, shells and processes. */
  cwd?: string;
}

export interface ProcessOptions extends ExecOptions {
  /** Run it on a pseudo-terminal of cols x rows (stdout and stderr are then one stream). */
  tty?: boolean;
  cols?: number;
  rows?: number;
}

/** A background process as Lease.processes() lists it. */
export interface ProcessInfo {
  id: string;
  command: string;
  running: boolean;
  /** Once it ended (-1 when a signal ended it); null while it runs. */
  exitCode: number | null;
  signal: number;
  tty: boolean;
}

/** A shell or a code context as Lease.shells() and Lease.contexts() list it. */
export interface ShellInfo {
  id: string;
  /** Its process lives; false once it ended (listed until closed or opened again under this id). */
  running: boolean;
  /** A command (in a context: a run) is going on in it. */
  busy: boolean;
  /** Its process inside the sandbox. */
  pid: number;
}

/** One read of a process's output from byte offsets (pass `offset`s to the next read). */
export interface ProcessOutput {
  stdout: string;
  stderr: string;
  offset: number;
  stderrOffset: number;
  running: boolean;
  exitCode: number | null;
  signal: number;
  timedOut: boolean;
  truncated: boolean;
  durationMs: number;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** -1 when killed by a signal. */
  exitCode: number;
  /** The signal that ended the command, 0 if it exited. */
  signal: number;
  durationMs: number;
  timedOut: boolean;
  /** Output was cut at the output limit. */
  truncated: boolean;
  lease?: string;
  session?: string;
  container: string;
  pool: string;
  node: string;
}

/** An exception a context run raised and did not catch. */
export interface CodeError {
  /**
   * The exception's class name ("ZeroDivisionError"); "KeyboardInterrupt" when the run's
   * timeout interrupted it, "SystemExit" for sys.exit() (the context lives on),
   * "ContextExited" when the context's process ended in the run (os._exit, or a run that
   * ignored the interrupt and was killed).
   */
  name: string;
  /** str() of the exception. */
  value: string;
  /** The formatted traceback of the run's own frames. */
  traceback: string;
}

/** What one Context.run did. An exception in the code is `error`, not a rejection. */
export interface CodeResult {
  stdout: string;
  stderr: string;
  /** repr() of the last statement's value when it is an expression (and not None), else null. */
  result: string | null;
  error: CodeError | null;
  durationMs: number;
  /** The run's timeout interrupted it (`error` is then KeyboardInterrupt or ContextExited). */
  timedOut: boolean;
  /** Output beyond the pool's output_limit was dropped. */
  truncated: boolean;
  /** No exception and no timeout. */
  ok: boolean;
}

export interface LeaseInfo {
  id: string;
  pool: string;
  container: string;
  node: string;
  tenant: string;
  session: string;
  /** The server releases the lease when it is untouched this long. */
  expiresInMs: number;
}

export interface ContainerStats {
  id: string;
  state: string;
  uses: number;
  ageMs: number;
  lastProbeMsAgo: number | null;
  lastProbeOk: boolean;
  restarts: number;
  leaseId?: string;
}

export interface PoolStats {
  name: string;
  backend: string;
  node: string;
  enabled: boolean;
  minIdle: number;
  maxSize: number;
  total: number;
  idle: number;
  leased: number;
  creating: number;
  waiting: number;
  /** Sandboxes per lifecycle state. */
  states: Record<string, number>;
  hits: number;
  misses: number;
  exhausted: number;
  recycled: number;
  failed: number;
  probeFailures: number;
  executions: number;
  fresh: number;
  /** Retired sandboxes per reason. */
  retired: Record<string, number>;
  transitions?: Record<string, number>;
  containers: ContainerStats[];
}

export interface Health {
  status: "ok";
  /** Number of pools. */
  pools: number;
}

type Wire = Record<string, unknown>;

const str = (v: unknown): string => (typeof v === "string" ? v : "");
const num = (v: unknown): number => (typeof v === "number" ? v : 0);
const counts = (v: unknown): Record<string, number> => (v && typeof v === "object" ? { ...(v as Record<string, number>) } : {});

/** The request body fields of an exec (shared by execute and lease exec). */
export function execBody(command: Command, o: ExecOptions = {}): Wire {
  const body: Wire =
    typeof command === "string" || Array.isArray(command)
      ? { command }
      : { code: command.code, language: command.language ?? "python" };
  if (o.stdin !== undefined) body.stdin = o.stdin;
  if (o.env !== undefined) body.env = o.env;
  if (o.cwd !== undefined) body.cwd = o.cwd;
  if (o.timeout !== undefined) body.timeout = o.timeout;
  if (o.outputLimit !== undefined) body.output_limit = o.outputLimit;
  return body;
}

export function routingBody(o: RoutingOptions): Wire {
  const body: Wire = {};
  if (o.pool !== undefined) body.pool = o.pool;
  if (o.labels !== undefined) body.labels = o.labels;
  if (o.session !== undefined) body.session = o.session;
  if (o.tenant !== undefined) body.tenant = o.tenant;
  return body;
}

export function toExecResult(w: Wire): ExecResult {
  const r: ExecResult = {
    stdout: str(w.stdout),
    stderr: str(w.stderr),
    exitCode: num(w.exit_code),
    signal: num(w.signal),
    durationMs: num(w.duration_ms),
    timedOut: w.timed_out === true,
    truncated: w.truncated === true,
    container: str(w.container),
    pool: str(w.pool),
    node: str(w.node),
  };
  if (typeof w.lease === "string") r.lease = w.lease;
  if (typeof w.session === "string") r.session = w.session;
  return r;
}

export function toLeaseInfo(w: Wire): LeaseInfo {
  return {
    id: str(w.id),
    pool: str(w.pool),
    container: str(w.container),
    node: str(w.node),
    tenant: str(w.tenant),
    session: str(w.session),
    expiresInMs: num(w.expires_in_ms),
  };
}

function toContainerStats(w: Wire): ContainerStats {
  const c: ContainerStats = {
    id: str(w.id),
    state: str(w.state),
    uses: num(w.uses),
    ageMs: num(w.age_ms),
    lastProbeMsAgo: typeof w.last_probe_ms_ago === "number" ? w.last_probe_ms_ago : null,
    lastProbeOk: w.last_probe_ok === true,
    restarts: num(w.restarts),
  };
  if (typeof w.lease_id === "string") c.leaseId = w.lease_id;
  return c;
}

export function toPoolStats(w: Wire): PoolStats {
  const p: PoolStats = {
    name: str(w.name),
    backend: str(w.backend),
    node: str(w.node),
    enabled: w.enabled === true,
    minIdle: num(w.min_idle),
    maxSize: num(w.max_size),
    total: num(w.total),
    idle: num(w.idle),
    leased: num(w.leased),
    creating: num(w.creating),
    waiting: num(w.waiting),
    states: counts(w.states),
    hits: num(w.hits),
    misses: num(w.misses),
    exhausted: num(w.exhausted),
    recycled: num(w.recycled),
    failed: num(w.failed),
    probeFailures: num(w.probe_failures),
    executions: num(w.executions),
    fresh: num(w.fresh),
    retired: counts(w.retired),
    containers: Array.isArray(w.containers) ? w.containers.map((c) => toContainerStats(c as Wire)) : [],
  };
  if (w.transitions && typeof w.transitions === "object") p.transitions = counts(w.transitions);
  return p;
}

const exitCodeOrNull = (v: unknown): number | null => (typeof v === "number" ? v : null);

export function toProcessInfo(w: Wire): ProcessInfo {
  return {
    id: str(w.id),
    command: str(w.command),
    running: w.running === true,
    exitCode: exitCodeOrNull(w.exit_code),
    signal: num(w.signal),
    tty: w.tty === true,
  };
}

export function toShellInfo(w: Wire): ShellInfo {
  return { id: str(w.id), running: w.running === true, busy: w.busy === true, pid: num(w.pid) };
}

export function toProcessOutput(w: Wire): ProcessOutput {
  return {
    stdout: str(w.stdout),
    stderr: str(w.stderr),
    offset: num(w.offset),
    stderrOffset: num(w.stderr_offset),
    running: w.running === true,
    exitCode: exitCodeOrNull(w.exit_code),
    signal: num(w.signal),
    timedOut: w.timed_out === true,
    truncated: w.truncated === true,
    durationMs: num(w.duration_ms),
  };
}

export function toCodeResult(w: Wire): CodeResult {
  const e = w.error && typeof w.error === "object" ? (w.error as Wire) : null;
  const error = e ? { name: str(e.name), value: str(e.value), traceback: str(e.traceback) } : null;
  const timedOut = w.timed_out === true;
  return {
    stdout: str(w.stdout),
    stderr: str(w.stderr),
    result: typeof w.result === "string" ? w.result : null,
    error,
    durationMs: num(w.duration_ms),
    timedOut,
    truncated: w.truncated === true,
    ok: error === null && !timedOut,
  };
}
