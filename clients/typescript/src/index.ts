// warmpool: a client for the warmpool HTTP API (`warmpool serve`).
export { Client, type ClientOptions } from "./client.js";
export { Lease } from "./lease.js";
export { Context, Process, Shell } from "./live.js";
export { ExecStream, type ExitEvent, type OutputEvent, type StreamEvent } from "./stream.js";
export * from "./errors.js";
export type {
  AcquireOptions,
  Code,
  CodeError,
  CodeResult,
  Command,
  ContainerStats,
  Duration,
  ExecOptions,
  ExecResult,
  ExecuteOptions,
  Health,
  LeaseInfo,
  PoolStats,
  ProcessInfo,
  ProcessOptions,
  ProcessOutput,
  RoutingOptions,
  ShellInfo,
  Size,
} from "./types.js";
