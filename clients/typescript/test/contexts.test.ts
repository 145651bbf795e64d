// Stateful Python code contexts through the client against the real server
// typescript_client.sh starts (its pools set no interpreters: a context runs python3).
// Runs share globals; the last expression's repr is `result`; an exception is a structured
// `error`; a timeout interrupts the run and the context goes on; a context that died rejects
// with ShellExitedError, one that is not there with NotFoundError; release ends them all.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  type CodeResult,
  ConflictError,
  Context,
  InvalidRequestError,
  NotFoundError,
  ShellExitedError,
  UnknownLeaseError,
} from "warmpool";
import { client, rejection, waitFor } from "./server.js";


/** The parts of a result a test compares whole (durationMs varies). */
const shape = (r: CodeResult) =>
  ({ stdout: r.stdout, stderr: r.stderr, result: r.result, error: r.error, timedOut: r.timedOut, ok: r.ok });

test("GlobalsPersistAcrossRuns", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  await using ctx = await lease.openContext();
  assert.ok(ctx instanceof Context);
  assert.ok(ctx.id, "the server names a context opened without a name");
  assert.equal(ctx.leaseId, lease.id);
  assert.equal((await ctx.run("x = 0")).result, null);
  await ctx.run("x += 1");
  await ctx.run("x += 1");
  assert.equal((await ctx.run("x")).result, "2");
  await ctx.run("import json\ndef twice(v):\n    return v * 2");
  assert.equal((await ctx.run("json.dumps(twice([x]))")).result, `'[2, 2]'`);
  // Another context of the same lease has its own namespace.
  await using other = await lease.openContext();
  assert.notEqual(other.id, ctx.id);
  const missing = await other.run("x");
  assert.equal(missing.error?.name, "NameError");
  assert.equal((await ctx.run("x")).result, "2");
});

test("TheLastExpressionIsTheResult", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  await using ctx = await lease.openContext();
  const r = await ctx.run("print('p')\n[1, 'a', None]");
  assert.deepEqual(shape(r), { stdout: "p\n", stderr: "", result: "[1, 'a', None]", error: null, timedOut: false, ok: true });
  assert.equal(typeof r.durationMs, "number");
  assert.ok(r.durationMs >= 0 && r.durationMs < 10_000, String(r.durationMs));
  assert.equal((await ctx.run("'a' * 2")).result, "'aa'");
  assert.equal((await ctx.run("None")).result, null); // None gives no result
  assert.equal((await ctx.run("y = 5")).result, null); // nor does a statement
  assert.deepEqual(shape(await ctx.run("print(3)")), { stdout: "3\n", stderr: "", result: null, error: null, timedOut: false, ok: true });
  const err = await ctx.run("import sys\nsys.stderr.write('warn\\n')");
  assert.equal(err.stderr, "warn\n");
  assert.equal(err.result, "5"); // write() returns the count
});

test("AnExceptionIsAStructuredError", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  await using ctx = await lease.openContext("errs");
  assert.equal(ctx.id, "errs");
  await ctx.run("kept = 'k'");
  const r = await ctx.run("print('before')\na = 1\nb = a / 0");
  assert.equal(r.stdout, "before\n");
  assert.equal(r.result, null);
  assert.equal(r.error?.name, "ZeroDivisionError");
  assert.equal(r.error?.value, "division by zero");
  assert.match(r.error?.traceback ?? "", /b = a \/ 0/);
  assert.match(r.error?.traceback ?? "", /ZeroDivisionError/);
  assert.equal(r.timedOut, false);
  assert.equal(r.ok, false);
  // sys.exit() is an error too, and the context lives on.
  const exit = await ctx.run("import sys\nsys.exit(3)");
  assert.equal(exit.error?.name, "SystemExit");
  assert.equal(exit.error?.value, "3");
  assert.equal((await ctx.run("kept")).result, "'k'");
});

test("ATimeoutInterruptsALongLoopAndTheContextStaysUsable", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  await using ctx = await lease.openContext();
  await ctx.run("n = 41");
  const r = await ctx.run("print('looping')\nwhile True: pass", "300ms");
  assert.equal(r.timedOut, true);
  assert.equal(r.ok, false);
  assert.equal(r.error?.name, "KeyboardInterrupt");
  assert.equal(r.stdout, "looping\n");
  assert.ok(r.durationMs >= 250 && r.durationMs < 5_000, String(r.durationMs));
  assert.equal((await ctx.run("n + 1")).result, "42");
  // A timeout in milliseconds, as a number.
  const again = await ctx.run("while True: n += 1", 200);
  assert.equal(again.timedOut, true);
  assert.equal(again.error?.name, "KeyboardInterrupt");
  const after = await ctx.run("n > 41");
  assert.deepEqual(shape(after), { stdout: "", stderr: "", result: "True", error: null, timedOut: false, ok: true });
});

test("AContextThatDiedIsAShellExitedConflictAndItsNameOpensAgain", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  const ctx = await lease.openContext("phoenix");
  await ctx.run("secret = 1");
  const r = await ctx.run("import os\nos._exit(2)");
  assert.equal(r.error?.name, "ContextExited");
  assert.equal(r.ok, false);
  assert.deepEqual((await lease.contexts()).map((c) => [c.id, c.running]), [["phoenix", false]]);
  const e = await rejection(ctx.run("secret"), ShellExitedError);
  assert.equal(e.status, 409);
  assert.equal(e.code, "shell_exited");
  assert.ok(e instanceof ConflictError);
  // The name is free again: a new process, with fresh globals.
  await using reborn = await lease.openContext("phoenix");
  assert.equal(reborn.id, "phoenix");
  assert.equal((await reborn.run("secret")).error?.name, "NameError");
  assert.equal((await reborn.run("1 + 1")).result, "2");
});

test("ASecondRunWhileOneRunsIsAConflict", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  await using ctx = await lease.openContext("busy");
  const opened = await rejection(lease.openContext("busy"), ConflictError);
  assert.equal(opened.code, "conflict");
  const slow = ctx.run("open('started', 'w').close()\nimport time\ntime.sleep(2)\n'slept'");
  await waitFor("the first run starts", async () => (await lease.exec("test -f started")).exitCode === 0);
  const e = await rejection(ctx.run("1"), ConflictError);
  assert.equal(e.status, 409);
  assert.equal(e.code, "conflict");
  assert.ok(!(e instanceof ShellExitedError));
  const listed = await lease.contexts();
  assert.deepEqual(listed.map((c) => [c.id, c.running, c.busy]), [["busy", true, true]]);
  assert.ok((listed[0]?.pid ?? 0) > 0);
  assert.equal((await slow).result, "'slept'");
  assert.equal((await ctx.run("2")).result, "2");
  assert.deepEqual((await lease.contexts()).map((c) => [c.id, c.busy]), [["busy", false]]);
});

test("AClosedContextIsNotFound", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  const ctx = await lease.openContext();
  assert.equal((await ctx.run("1")).result, "1");
  assert.equal(ctx.closed, false);
  await ctx.close();
  assert.equal(ctx.closed, true);
  await ctx.close(); // a second close does nothing
  const e = await rejection(ctx.run("1"), NotFoundError);
  assert.equal(e.status, 404);
  assert.equal(e.code, "not_found");
  await rejection(lease.attachContext(ctx.id).run("1"), NotFoundError);
  // attachContext makes no request: a context that never was fails on its first run.
  const never = lease.attachContext("no-such-context");
  assert.equal(never.id, "no-such-context");
  assert.equal((await rejection(never.run("1"), NotFoundError)).code, "not_found");
  await never.close(); // closing one that is not there counts as closed
  assert.equal(never.closed, true);
  // `await using` closes at the end of its scope.
  let scoped = "";
  {
    await using c = await lease.openContext();
    scoped = c.id;
    await c.run("v = 1");
  }
  await rejection(lease.attachContext(scoped).run("v"), NotFoundError);
});

test("BadInputToAContextIsTyped", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  const name = await rejection(lease.openContext("no spaces allowed"), InvalidRequestError);
  assert.equal(name.status, 400);
  assert.match(name.message, /name/);
  await using ctx = await lease.openContext();
  const timeout = await rejection(ctx.run("1", "soon"), InvalidRequestError);
  assert.match(timeout.message, /timeout/);
  // A syntax error is the code's own error, not a bad request.
  const r = await ctx.run("def (");
  assert.equal(r.error?.name, "SyntaxError");
  assert.equal(r.ok, false);
});

test("ReleaseEndsTheLeasesContexts", async () => {
  // `single` has one sandbox: the second lease gets the first one's, reset.
  let first = "";
  let container = "";
  let kept: Context | undefined;
  {
    await using lease = await client.acquire({ pool: "single", timeout: "60s" });
    first = lease.id;
    container = lease.container;
    kept = await lease.openContext("kept");
    await kept.run("secret = 1");
    assert.equal((await kept.run("secret")).result, "1");
  }
  // The released lease is unknown; closing its context counts as closed.
  const gone = await rejection(kept.run("secret"), UnknownLeaseError);
  assert.equal(gone.status, 404);
  assert.equal(gone.code, "unknown_lease");
  await kept.close();
  assert.equal(kept.closed, true);

  await using lease = await client.acquire({ pool: "single", timeout: "60s" });
  assert.notEqual(lease.id, first);
  assert.equal(lease.container, container, "the pool's one sandbox, reused");
  const e = await rejection(lease.attachContext("kept").run("secret"), NotFoundError);
  assert.equal(e.code, "not_found");
  await using fresh = await lease.openContext("kept");
  assert.equal((await fresh.run("secret")).error?.name, "NameError");
});
