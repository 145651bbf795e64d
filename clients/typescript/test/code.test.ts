// Python `{ code }` through the client against the real server typescript_client.sh starts:
// its `python` pool has interpreters.python (json preloaded). Each run is a fresh process with
// `python3 -c`'s results (stdout, exit codes, tracebacks, stdin, timeouts), whole or streamed,
// one-shot or on a lease, in the foreground or as a background process; a pool without an
// interpreter refuses code.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ExecTimeoutError, InvalidRequestError, type StreamEvent } from "warmpool";
import { client, rejection } from "./server.js";

const pool = "python";

test("CodeRunsAsPython3CWould", async () => {
  const r = await client.execute({ code: "print(6 * 7)" }, { pool });
  assert.deepEqual([r.stdout, r.stderr, r.exitCode, r.pool], ["42\n", "", 0, pool]);
  const main = await client.execute(
    { code: "import sys; print(__name__, sys.argv, 'json' in sys.modules)", language: "python" },
    { pool },
  );
  assert.equal(main.stdout, "__main__ ['-c'] True\n");
});

test("ExitCodesAndTracebacksArePython3Cs", async () => {
  assert.equal((await client.execute({ code: "import sys; sys.exit(3)" }, { pool })).exitCode, 3);
  const r = await client.execute({ code: "x = 1\ny = x / 0" }, { pool });
  assert.equal(r.exitCode, 1);
  assert.match(r.stderr, /^Traceback \(most recent call last\):\n/);
  assert.match(r.stderr, /File "<string>", line 2, in <module>/);
  assert.match(r.stderr, /ZeroDivisionError: division by zero\n$/);
});

test("EachRunIsAFreshProcess", async () => {
  await using lease = await client.acquire({ pool, timeout: "20s" });
  const probe = { code: "import os; print(os.getpid(), globals().get('leak'))\nleak = 'set'" };
  const [pid1, leak1] = (await lease.exec(probe)).stdout.split(" ");
  const [pid2, leak2] = (await lease.exec(probe)).stdout.split(" ");
  assert.deepEqual([leak1, leak2], ["None\n", "None\n"]);
  assert.notEqual(pid1, pid2);
});

test("StdinEnvCwdAndTimeoutApplyToCode", async () => {
  const r = await client.execute(
    { code: "import os, sys; print(sys.stdin.read().upper(), os.environ['GREETING'], os.getcwd())" },
    { pool, stdin: "abc", env: { GREETING: "hi" }, cwd: "/tmp" },
  );
  assert.equal(r.stdout, "ABC hi /tmp\n");
  const e = await rejection(
    client.execute({ code: "print('started', flush=True)\nwhile True: pass" }, { pool, timeout: "500ms" }),
    ExecTimeoutError,
  );
  assert.equal(e.result.stdout, "started\n");
  assert.equal((await client.execute({ code: "print('next')" }, { pool })).stdout, "next\n");
});

test("StreamedCodeComesInOrderAndEndsWithItsExit", async () => {
  const events: StreamEvent[] = [];
  const code = "import sys\nfor i in range(3): print(i, flush=True)\nsys.exit(2)";
  for await (const ev of await client.executeStream({ code }, { pool })) events.push(ev);
  assert.equal(events.map((e) => (e.type === "stdout" ? e.data : "")).join(""), "0\n1\n2\n");
  const last = events.at(-1);
  assert.equal(last?.type === "exit" ? last.exitCode : undefined, 2);
  await using lease = await client.acquire({ pool, timeout: "20s" });
  assert.equal((await (await lease.execStream({ code: "print('on a lease')" })).result()).stdout, "on a lease\n");
});

test("ABackgroundProcessRunsCodeToo", async () => {
  await using lease = await client.acquire({ pool, timeout: "20s" });
  await using proc = await lease.startProcess(
    { code: "import sys\nprint(sys.stdin.readline().strip()[::-1])" },
    { stdin: "olleh\n" },
  );
  const r = await proc.wait("20s");
  assert.deepEqual([r.stdout, r.exitCode], ["hello\n", 0]);
  assert.deepEqual((await lease.processes()).map((p) => p.command), ["python"]);
});

test("APoolWithoutAnInterpreterRefusesCode", async () => {
  const e = await rejection(client.execute({ code: "print(1)" }, { pool: "single" }), InvalidRequestError);
  assert.match(e.message, /interpreters\.python/);
});
