// warmpool: a client for the warmpool HTTP API (`warmpool serve`).
export { Client, type ClientOptions } from "./client.js";
export { Lease } from "./lease.js";
export * from "./errors.js";
export type {
  AcquireOptions,
  Command,
  ContainerStats,
  Duration,
  ExecOptions,
  ExecResult,
  ExecuteOptions,
  Health,
  LeaseInfo,
  PoolStats,
  RoutingOptions,
  Size,
} from "./types.js";
