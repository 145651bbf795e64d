// The client, imported as the package itself (dist/, by self-reference), against a real
// `warmpool serve` (bubblewrap pools on loopback, with a bearer token) that
// tests/scripts/typescript_client.sh starts: WARMPOOL_URL, WARMPOOL_TOKEN.
// Pools: `shell` (local, max_size 2) and `single` (local, max_size 1: a held lease exhausts it).
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { test } from "node:test";

import {
  Client,
  ExecTimeoutError,
  InvalidRequestError,
  NotFoundError,
  PayloadTooLargeError,
  PoolExhaustedError,
  UnauthorizedError,
  UnavailableError,
  UnknownLeaseError,
  UnknownPoolError,
  UnreachableError,
  WarmpoolError,
} from "warmpool"; // the package itself (dist/, as consumers get it) by self-reference
import { client, rejection, url, token } from "./server.js";


test("ExecuteReturnsOutputOfASuccessfulCommand", async () => {
  const r = await client.execute(["echo", "hello", "warmpool"], { pool: "shell" });
  assert.equal(r.stdout, "hello warmpool\n");
  assert.equal(r.exitCode, 0);
  assert.equal(r.signal, 0);
  assert.equal(r.timedOut, false);
  assert.equal(r.pool, "shell");
  assert.ok(r.container.length > 0);
  assert.ok(r.node.length > 0);
});

test("ExecuteRunsAShellStringWithStdinAndEnv", async () => {
  const r = await client.execute('read line; echo "$GREETING $line"', {
    pool: "shell",
    stdin: "world\n",
    env: { GREETING: "hello" },
  });
  assert.equal(r.stdout, "hello world\n");
});

test("NonZeroExitIsAResultNotAnError", async () => {
  const r = await client.execute("echo oops >&2; exit 3", { pool: "shell" });
  assert.equal(r.exitCode, 3);
  assert.equal(r.stderr, "oops\n");
  assert.equal(r.timedOut, false);
});

test("CommandOverItsTimeoutThrowsExecTimeoutErrorWithPartialOutput", async () => {
  const e = await rejection(
    client.execute("echo started; sleep 30; echo never", { pool: "shell", timeout: "500ms" }),
    ExecTimeoutError,
  );
  assert.equal(e.status, 504);
  assert.equal(e.code, "exec_timeout");
  assert.equal(e.result.timedOut, true);
  assert.equal(e.result.stdout, "started\n");
  assert.ok(e instanceof WarmpoolError);
});

test("LeaseRunsCommandsAndMovesFilesUntilReleased", async () => {
  const lease = await client.acquire({ pool: "shell", tenant: "ts-client" });
  assert.equal(lease.pool, "shell");
  assert.equal(lease.tenant, "ts-client");
  assert.ok(lease.expiresInMs > 0);
  const bytes = Uint8Array.from({ length: 256 }, (_, i) => i); // every byte value survives
  try {
    await lease.putFile("notes.txt", "written by the client\n");
    await lease.putFile("bytes.bin", bytes);
    const cat = await lease.exec(["cat", "notes.txt"]);
    assert.equal(cat.stdout, "written by the client\n");
    assert.equal(cat.lease, lease.id);
    await lease.exec("tr a-z A-Z < notes.txt > upper.txt");
    assert.equal(await lease.getText("upper.txt"), "WRITTEN BY THE CLIENT\n");
    assert.deepEqual(await lease.getFile("bytes.bin"), bytes);
    assert.equal((await lease.exec(["cat"], { stdin: "piped\n" })).stdout, "piped\n");
    assert.equal((await lease.refresh()).id, lease.id);
  } finally {
    await lease.release();
  }
  assert.equal(lease.released, true);
  await rejection(lease.exec(["true"]), UnknownLeaseError);
});

test("SessionKeepsItsSandboxAndFilesBetweenExecutes", async () => {
  const session = process.env.WARMPOOL_SESSION ?? `ts-session-${process.pid}`; // one for the suite
  const first = await client.execute("echo kept > session.txt", { pool: "shell", session });
  const second = await client.execute(["cat", "session.txt"], { pool: "shell", session });
  assert.equal(second.container, first.container);
  assert.equal(second.session, session);
  assert.equal(second.stdout, "kept\n");
});

test("DirtyReleaseRetiresTheSandbox", async () => {
  const before = (await client.pool("single")).retired.dirty ?? 0;
  const lease = await client.acquire({ pool: "single", timeout: "20s" });
  await lease.release(true);
  // Pool counters arrive asynchronously from the sandbox; the retirement shows up shortly.
  for (let i = 0; i < 200 && ((await client.pool("single")).retired.dirty ?? 0) === before; i++)
    await new Promise((r) => setTimeout(r, 50));
  assert.equal((await client.pool("single")).retired.dirty, before + 1);
});

test("BodyOverTheServersLimitIsPayloadTooLarge", async () => {
  await client.withLease({ pool: "shell" }, async (lease) => {
    const e = await rejection(lease.putFile("big.bin", new Uint8Array(4 << 20)), PayloadTooLargeError);
    assert.equal(e.status, 413);
    assert.equal(e.code, "payload_too_large");
  });
});

test("UnknownLeaseIsATypedNotFoundError", async () => {
  const e = await rejection(client.exec("no-such-lease", ["true"]), UnknownLeaseError);
  assert.equal(e.status, 404);
  assert.equal(e.code, "unknown_lease");
  assert.ok(e instanceof NotFoundError);
  await rejection(client.getFile("no-such-lease", "x"), UnknownLeaseError);
  await rejection(client.release("no-such-lease"), UnknownLeaseError);
});

test("ReadingAMissingFileIsAnInvalidRequest", async () => {
  await client.withLease({ pool: "shell" }, async (lease) => {
    const e = await rejection(lease.getFile("does/not/exist"), InvalidRequestError);
    assert.equal(e.status, 400);
  });
});

test("ExhaustedPoolThrowsPoolExhaustedErrorWithRetryAfter", async () => {
  const held = await client.acquire({ pool: "single" });
  try {
    const e = await rejection(client.acquire({ pool: "single", timeout: "200ms" }), PoolExhaustedError);
    assert.equal(e.status, 503);
    assert.equal(e.code, "pool_exhausted");
    assert.equal(e.retryAfter, 1);
    assert.ok(e instanceof UnavailableError);
  } finally {
    await held.release();
  }
});

test("WithLeaseReleasesWhenTheCallbackThrows", async () => {
  let seen = "";
  await assert.rejects(
    client.withLease({ pool: "single" }, async (lease) => {
      seen = lease.id;
      throw new Error("callback failed");
    }),
    /callback failed/,
  );
  assert.ok(seen);
  // The pool has one sandbox: acquiring it again proves the first lease was given back.
  await rejection(client.lease(seen), UnknownLeaseError);
  const again = await client.acquire({ pool: "single", timeout: "20s" });
  await again.release();
});

test("AwaitUsingReleasesTheLeaseAtTheEndOfTheScope", async () => {
  let id = "";
  {
    await using lease = await client.acquire({ pool: "single", timeout: "20s" });
    id = lease.id;
    assert.equal((await lease.exec(["echo", "scoped"])).stdout, "scoped\n");
  }
  await rejection(client.lease(id), UnknownLeaseError);
});

test("MalformedRequestIsATypedInvalidRequest", async () => {
  const empty = await rejection(client.execute([], { pool: "shell" }), InvalidRequestError);
  assert.equal(empty.status, 400);
  assert.equal(empty.code, "invalid_request");
  assert.match(empty.message, /command/);
  const badTimeout = await rejection(client.execute(["true"], { pool: "shell", timeout: "soon" }), InvalidRequestError);
  assert.match(badTimeout.message, /timeout/);
});

test("UnknownPoolIsATypedNotFoundError", async () => {
  const e = await rejection(client.execute(["true"], { pool: "no-such-pool" }), UnknownPoolError);
  assert.equal(e.status, 404);
  assert.equal(e.code, "unknown_pool");
  await rejection(client.pool("no-such-pool"), UnknownPoolError);
});

test("RequestsWithoutTheTokenAreUnauthorized", async () => {
  const anonymous = new Client({ url });
  const e = await rejection(anonymous.pools(), UnauthorizedError);
  assert.equal(e.status, 401);
  assert.equal(e.code, "unauthorized");
  await rejection(anonymous.execute(["true"], { pool: "shell" }), UnauthorizedError);
  await rejection(new Client({ url, token: token + "-wrong" }).acquire({ pool: "shell" }), UnauthorizedError);
  // Liveness needs no token.
  assert.equal((await anonymous.health()).status, "ok");
});

test("PoolStatsAreTyped", async () => {
  const pools = await client.pools();
  assert.deepEqual(pools.map((p) => p.name).sort(), ["python", "shell", "single"]);
  const shell = await client.pool("shell");
  assert.equal(shell.backend, "local");
  assert.equal(shell.maxSize, 2);
  assert.equal(shell.minIdle, 1);
  assert.ok(shell.executions >= 1, `executions ${shell.executions}`);
  assert.ok(shell.containers.every((c) => typeof c.state === "string" && c.ageMs >= 0));
  assert.equal(await client.ready(), true);
  assert.match(await client.metrics(), /^warmpool_executions_total\{.*pool="shell".*\} \d+$/m);
});

test("ServerThatIsNotThereIsAnUnreachableError", async () => {
  // A port that was free a moment ago: nothing listens there.
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const e = await rejection(new Client({ url: `http://127.0.0.1:${port}` }).health(), UnreachableError);
  assert.equal(e.status, 0);
  assert.match(e.message, /ECONNREFUSED/);
});
