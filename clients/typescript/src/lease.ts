// A held sandbox: exec and files on it until released. `await using` releases it at the end
// of the scope (TypeScript 5.2+), as does Client.withLease for callers without it.
import type { Client } from "./client.js";
import { Context, Process, Shell } from "./live.js";
import type { ExecStream } from "./stream.js";
import type { Command, ExecOptions, ExecResult, LeaseInfo, ProcessInfo, ProcessOptions, ShellInfo } from "./types.js";

export class Lease implements LeaseInfo {
  readonly id: string;
  readonly pool: string;
  readonly container: string;
  readonly node: string;
  readonly tenant: string;
  readonly session: string;
  readonly expiresInMs: number;
  #released = false;

  constructor(
    private readonly client: Client,
    info: LeaseInfo,
  ) {
    this.id = info.id;
    this.pool = info.pool;
    this.container = info.container;
    this.node = info.node;
    this.tenant = info.tenant;
    this.session = info.session;
    this.expiresInMs = info.expiresInMs;
  }

  /** Whether release() was called (the server may also have released it: see lease_ttl). */
  get released(): boolean {
    return this.#released;
  }

  /** Runs a command in this sandbox; a non-zero exit is a result, a timeout an ExecTimeoutError. */
  exec(command: Command, options?: ExecOptions): Promise<ExecResult> {
    return this.client.exec(this.id, command, options);
  }

  /** exec() with the output as it comes (leaving the stream early stops the command). */
  execStream(command: Command, options?: ExecOptions): Promise<ExecStream> {
    return this.client.execStream(this.id, command, options);
  }

  /** Opens a persistent shell (`await using sh = await lease.openShell()` closes it). */
  async openShell(name?: string): Promise<Shell> {
    return new Shell(this.client, this.id, await this.client.openShell(this.id, name));
  }

  /** A Shell for the id of one opened elsewhere (no request is made). */
  attachShell(id: string): Shell {
    return new Shell(this.client, this.id, id);
  }

  /** The lease's shells, by id; one whose process ended stays listed (`running` false) until closed. */
  shells(): Promise<ShellInfo[]> {
    return this.client.shells(this.id);
  }

  /** The lease's code contexts, by id; one whose process ended stays listed (`running` false) until closed. */
  contexts(): Promise<ShellInfo[]> {
    return this.client.contexts(this.id);
  }

  /**
   * Opens a stateful Python code context (`await using ctx = await lease.openContext()`
   * closes it); `name` names it, else the server picks an id.
   */
  async openContext(name?: string): Promise<Context> {
    return new Context(this.client, this.id, await this.client.openContext(this.id, name));
  }

  /** A Context for the id of one opened elsewhere (no request is made). */
  attachContext(id: string): Context {
    return new Context(this.client, this.id, id);
  }

  /** Starts a background process (`await using p = await lease.startProcess(...)` kills it). */
  async startProcess(command: Command, options?: ProcessOptions): Promise<Process> {
    return new Process(this.client, this.id, await this.client.startProcess(this.id, command, options));
  }

  /** A Process for an id from processes() (no request is made). */
  attachProcess(id: string): Process {
    return new Process(this.client, this.id, id);
  }

  /** The lease's background processes, running or ended (until forgotten). */
  processes(): Promise<ProcessInfo[]> {
    return this.client.processes(this.id);
  }

  putFile(path: string, data: string | Uint8Array): Promise<void> {
    return this.client.putFile(this.id, path, data);
  }

  getFile(path: string): Promise<Uint8Array> {
    return this.client.getFile(this.id, path);
  }

  async getText(path: string): Promise<string> {
    return new TextDecoder().decode(await this.getFile(path));
  }

  /** Describes the lease; also keeps it from expiring (a heartbeat). */
  refresh(): Promise<LeaseInfo> {
    return this.client.lease(this.id);
  }

  /**
   * Gives the sandbox back; `dirty`: do not reuse it (it is replaced, not reset). A second
   * call does nothing, so an explicit release inside `await using` is harmless.
   */
  async release(dirty = false): Promise<void> {
    if (this.#released) return;
    await this.client.release(this.id, dirty);
    this.#released = true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
