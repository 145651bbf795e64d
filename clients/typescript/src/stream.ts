// Streamed output: a command's stdout and stderr as they come, then its exit. The server
// streams when asked (Accept: application/x-ndjson): one JSON object a line, {"type":
// "stdout" | "stderr", "data"} as output comes and a last {"type": "exit", ...}, or {"type":
// "error", "error": {...}} when the sandbox failed mid-stream. An ExecStream is an async
// iterator over them; leaving it early (break, close(), `await using`) drops the connection.
import { UnreachableError, WarmpoolError, errorFor, statusOf } from "./errors.js";
import { type ExecResult, toExecResult } from "./types.js";

/** A piece of output, in the order the command wrote it to that stream (PTY: stdout only). */
export interface OutputEvent {
  type: "stdout" | "stderr";
  data: string;
}

/** The last event: how the command ended (its output came in the events before). */
export interface ExitEvent {
  type: "exit";
  /** -1 when a signal ended it. */
  exitCode: number;
  signal: number;
  durationMs: number;
  timedOut: boolean;
  truncated: boolean;
}

export type StreamEvent = OutputEvent | ExitEvent;

type Wire = Record<string, unknown>;

export class ExecStream implements AsyncIterableIterator<StreamEvent>, AsyncDisposable {
  /** The exit event once it arrived. */
  exit: ExitEvent | undefined;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  readonly #abort: AbortController;
  readonly #where: string;
  readonly #decoder = new TextDecoder();
  readonly #pending: StreamEvent[] = [];
  readonly #stdout: string[] = [];
  readonly #stderr: string[] = [];
  #buffer = "";
  #closed = false;

  /** Made by the client from a 200 answer (`events` when the server answered JSON whole). */
  constructor(res: Response, abort: AbortController, where: string, events?: StreamEvent[]) {
    this.#abort = abort;
    this.#where = where;
    if (events) {
      this.#pending.push(...events);
      this.#reader = undefined;
    } else {
      this.#reader = res.body?.getReader();
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  [Symbol.asyncIterator](): ExecStream {
    return this;
  }

  async next(): Promise<IteratorResult<StreamEvent>> {
    const event = await this.#next();
    if (event === undefined) return { done: true, value: undefined };
    if (event.type === "exit") {
      this.exit = event;
      this.close();
    } else {
      (event.type === "stdout" ? this.#stdout : this.#stderr).push(event.data);
    }
    return { done: false, value: event };
  }

  /** Called when a `for await` loop is left early: drops the connection. */
  async return(): Promise<IteratorResult<StreamEvent>> {
    this.close();
    return { done: true, value: undefined };
  }

  /** Reads the rest and returns the whole result (the output of every event seen). */
  async result(): Promise<ExecResult> {
    for (;;) {
      const r = await this.next();
      if (r.done) break;
    }
    if (!this.exit) throw this.#cut("the stream was closed before the command's exit");
    const { type: _type, ...fields } = this.exit;
    return { ...emptyResult(), ...fields, stdout: this.#stdout.join(""), stderr: this.#stderr.join("") };
  }

  /** Drops the connection (idempotent): the server stops a command streamed to this client. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  async #next(): Promise<StreamEvent | undefined> {
    if (this.#pending.length) return this.#pending.shift();
    if (this.exit || this.#closed || !this.#reader) return undefined;
    for (;;) {
      const newline = this.#buffer.indexOf("\n");
      if (newline >= 0) {
        const line = this.#buffer.slice(0, newline).trim();
        this.#buffer = this.#buffer.slice(newline + 1);
        if (!line) continue;
        const event = this.#parse(line);
        if (event) return event;
        continue;
      }
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await this.#reader.read();
      } catch (e) {
        this.close();
        throw this.#cut(e instanceof Error ? e.message : String(e), e);
      }
      if (chunk.done) {
        this.close();
        throw this.#cut("the stream ended before the command's exit");
      }
      this.#buffer += this.#decoder.decode(chunk.value, { stream: true });
    }
  }

  #parse(line: string): StreamEvent | undefined {
    let w: Wire;
    try {
      w = JSON.parse(line) as Wire;
    } catch {
      this.close();
      throw new WarmpoolError({ status: 200, code: "http_error", message: `${this.#where}: a stream line is not JSON: ${line.slice(0, 200)}` });
    }
    if (w.type === "stdout" || w.type === "stderr") return { type: w.type, data: typeof w.data === "string" ? w.data : "" };
    if (w.type === "exit") return toExitEvent(w);
    if (w.type === "error") {
      this.close();
      const err = (w.error ?? {}) as { code?: unknown; message?: unknown };
      const code = typeof err.code === "string" ? err.code : "internal";
      throw errorFor({ status: statusOf(code), code, message: typeof err.message === "string" ? err.message : "", body: w });
    }
    return undefined; // a type this version does not know
  }

  #cut(why: string, cause?: unknown): UnreachableError {
    return new UnreachableError({ status: 0, code: "unreachable", message: `${this.#where}: ${why}`, cause });
  }
}

export function toExitEvent(w: Wire): ExitEvent {
  return {
    type: "exit",
    exitCode: typeof w.exit_code === "number" ? w.exit_code : -1,
    signal: typeof w.signal === "number" ? w.signal : 0,
    durationMs: typeof w.duration_ms === "number" ? w.duration_ms : 0,
    timedOut: w.timed_out === true,
    truncated: w.truncated === true,
  };
}

/** The events of a whole JSON result (a server that did not stream this request). */
export function eventsOfResult(w: Wire): StreamEvent[] {
  const events: StreamEvent[] = [];
  if (typeof w.stdout === "string" && w.stdout) events.push({ type: "stdout", data: w.stdout });
  if (typeof w.stderr === "string" && w.stderr) events.push({ type: "stderr", data: w.stderr });
  events.push(toExitEvent(w));
  return events;
}

function emptyResult(): ExecResult {
  return toExecResult({});
}
