// A lease's persistent shells, Python code contexts and background processes (made by
// Lease.openShell, Lease.openContext and Lease.startProcess). All are AsyncDisposable: `await
// using` closes the shell or context / kills the process at the end of the scope; releasing
// the lease ends them all.
import type { Client } from "./client.js";
import { NotFoundError } from "./errors.js";
import type { ExecStream } from "./stream.js";
import type { CodeResult, Duration, ExecResult, ProcessOutput } from "./types.js";

/**
 * What Shell and Context share: an id in a lease, and close() (idempotent; one already gone,
 * or whose lease is, counts as closed), also at the end of an `await using` scope.
 */
abstract class LeasePart implements AsyncDisposable {
  #closed = false;

  constructor(
    protected readonly client: Client,
    readonly leaseId: string,
    readonly id: string,
  ) {}

  get closed(): boolean {
    return this.#closed;
  }

  protected abstract closeOnServer(): Promise<void>;

  /** Ends it and its process. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.closeOnServer();
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
    this.#closed = true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * A shell (bash where the sandbox has it, else sh): each command sees the cwd, variables and
 * functions earlier ones left, and returns its own output and exit code. A command over its
 * timeout is interrupted (ExecTimeoutError) and the shell goes on; a shell whose process ended
 * rejects with ShellExitedError (open another). One command at a time (else ConflictError).
 */
export class Shell extends LeasePart {
  /** Runs `command` and resolves to its result once it ended. */
  run(command: string, timeout?: Duration): Promise<ExecResult> {
    return this.client.shellRun(this.leaseId, this.id, command, timeout);
  }

  /** Runs `command`, its output as it comes (leaving the stream early stops the command). */
  stream(command: string, timeout?: Duration): Promise<ExecStream> {
    return this.client.shellStream(this.leaseId, this.id, command, timeout);
  }

  protected closeOnServer(): Promise<void> {
    return this.client.closeShell(this.leaseId, this.id);
  }
}

/**
 * A Python process whose runs share one namespace, as a notebook's cells do, until close()
 * or the lease's release. It runs the pool's `interpreters.python` command with its `preload`
 * modules imported (else python3). A run over its timeout gets a KeyboardInterrupt and the
 * context goes on; one that does not stop within a second is killed with the context (error
 * ContextExited), and later runs reject with ShellExitedError (open the name again). One run
 * at a time (else ConflictError); a context that is not there (closed, or its lease
 * released) rejects with NotFoundError.
 */
export class Context extends LeasePart {
  /**
   * Runs `code` (Python source) and resolves to what it did: an exception in the code is the
   * result's `error`, a timeout sets `timedOut` (default timeout: the pool's exec_timeout).
   */
  run(code: string, timeout?: Duration): Promise<CodeResult> {
    return this.client.runCode(this.leaseId, this.id, code, timeout);
  }

  protected closeOnServer(): Promise<void> {
    return this.client.closeContext(this.leaseId, this.id);
  }
}

/**
 * A process started in the background: it outlives the request that started it. Its output
 * is kept by the server and read from byte offsets (output(), or read() which remembers
 * where it got to) or followed as it comes (follow()).
 */
export class Process implements AsyncDisposable {
  #offset = 0;
  #stderrOffset = 0;

  constructor(
    private readonly client: Client,
    readonly leaseId: string,
    readonly id: string,
  ) {}

  /** Output after byte `offset` of stdout / `stderrOffset` of stderr; `waitMs` for some to come. */
  output(o: { offset?: number; stderrOffset?: number; waitMs?: number } = {}): Promise<ProcessOutput> {
    return this.client.processOutput(this.leaseId, this.id, o);
  }

  /** output() from where the last read() stopped: only what is new. */
  async read(waitMs?: number): Promise<ProcessOutput> {
    const o = await this.output({ offset: this.#offset, stderrOffset: this.#stderrOffset, ...(waitMs === undefined ? {} : { waitMs }) });
    this.#offset = o.offset;
    this.#stderrOffset = o.stderrOffset;
    return o;
  }

  /** The output from the offsets on as it comes, then the exit (the process outlives the reader). */
  follow(o: { offset?: number; stderrOffset?: number } = {}): Promise<ExecStream> {
    return this.client.followProcess(this.leaseId, this.id, o);
  }

  /** Writes to stdin (≤ 1 MiB, else TooLargeError); ConflictError once closed or ended. */
  writeStdin(data: string | Uint8Array, close = false): Promise<number> {
    return this.client.writeStdin(this.leaseId, this.id, data, close);
  }

  async closeStdin(): Promise<void> {
    await this.client.writeStdin(this.leaseId, this.id, new Uint8Array(0), true);
  }

  /** Sends a signal: a name ("TERM", "SIGINT") or a number. */
  signal(signal: string | number = "TERM"): Promise<void> {
    return this.client.signalProcess(this.leaseId, this.id, signal);
  }

  /** Sets a PTY process's window size. */
  resize(cols: number, rows: number): Promise<void> {
    return this.client.resizeProcess(this.leaseId, this.id, cols, rows);
  }

  /** The final result; StillRunningError (an ExecTimeoutError) if it runs past `timeout`. */
  wait(timeout: Duration = 30_000): Promise<ExecResult> {
    return this.client.waitProcess(this.leaseId, this.id, timeout);
  }

  /** Kills it if it runs and forgets it (one already forgotten counts as killed). */
  async kill(): Promise<void> {
    try {
      await this.client.forgetProcess(this.leaseId, this.id);
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }
}
