// Live sandboxes through the client against the real server typescript_client.sh starts:
// shells, background processes (output by offset, stdin, signals, a PTY, wait), streamed
// output as an async iterator, per-lease setup, session shells and the new typed errors.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ConflictError,
  ExecStream,
  ExecTimeoutError,
  InvalidRequestError,
  NotFoundError,
  PayloadTooLargeError,
  ShellExitedError,
  StillRunningError,
  type StreamEvent,
  TooLargeError,
} from "warmpool";
import { client, rejection, waitFor } from "./server.js";

// The suite's one sticky session (a second would hold the other `shell` sandbox).
const session = process.env.WARMPOOL_SESSION ?? `ts-session-${process.pid}`;

const joined = (events: StreamEvent[], stream: "stdout" | "stderr"): string =>
  events.map((e) => (e.type === stream ? e.data : "")).join("");

test("AShellKeepsItsDirectoryVariablesAndFunctions", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  await using sh = await lease.openShell();
  assert.equal((await sh.run("cd /workspace && mkdir p && cd p")).exitCode, 0);
  await sh.run("export GREETING=hi");
  assert.equal((await sh.run("echo $GREETING > f; pwd")).stdout, "/workspace/p\n");
  assert.equal(await lease.getText("p/f"), "hi\n");
  await sh.run('greet() { echo "$GREETING, $1"; }');
  assert.equal((await sh.run("greet ts")).stdout, "hi, ts\n");
  const e = await rejection(sh.run("echo before; sleep 30", "500ms"), ExecTimeoutError);
  assert.equal(e.result.stdout, "before\n");
  assert.equal((await sh.run("echo $GREETING; pwd")).stdout, "hi\n/workspace/p\n");
  const listed = await lease.shells();
  assert.deepEqual(listed.map((s) => [s.id, s.running, s.busy]), [[sh.id, true, false]]);
  assert.ok((listed[0]?.pid ?? 0) > 0);
  await sh.close();
  assert.ok(sh.closed);
  assert.deepEqual(await lease.shells(), []);
  await sh.close(); // a second close does nothing
});

test("AShellThatExitedIsATypedConflict", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  const sh = await lease.openShell("quits");
  assert.equal(sh.id, "quits");
  await sh.run("exit 3").catch((e: unknown) => assert.ok(e instanceof ShellExitedError, String(e)));
  const e = await rejection(sh.run("true"), ShellExitedError);
  assert.equal(e.status, 409);
  assert.ok(e instanceof ConflictError);
});

test("ABackgroundProcessTakesStdinAndIsReadFromOffsets", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  const cat = await lease.startProcess(["cat"]);
  assert.equal(await cat.writeStdin("one\n"), 4);
  await waitFor("cat echoes", async () => (await cat.output({ waitMs: 1000 })).stdout === "one\n");
  assert.equal((await cat.read()).stdout, "one\n");
  await cat.writeStdin(new TextEncoder().encode("two\n"));
  await waitFor("the second line", async () => (await cat.output({ offset: 4, waitMs: 1000 })).stdout === "two\n");
  const listed = await lease.processes();
  assert.deepEqual(listed.map((p) => [p.id, p.running, p.exitCode]), [[cat.id, true, null]]);
  await cat.closeStdin();
  await rejection(cat.writeStdin("late\n"), ConflictError);
  const r = await cat.wait("10s");
  assert.equal(r.stdout, "one\ntwo\n");
  assert.equal(r.exitCode, 0);
  await cat.kill();
  assert.deepEqual(await lease.processes(), []);
});

test("SignalsWaitAndAStillRunningTimeout", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  await using p = await lease.startProcess("exec sleep 30");
  const e = await rejection(p.wait(300), StillRunningError);
  assert.ok(e instanceof ExecTimeoutError);
  assert.equal(e.status, 504);
  await rejection(p.signal("NO-SUCH-SIGNAL"), InvalidRequestError);
  await p.signal("TERM");
  assert.equal((await p.wait("10s")).signal, 15);
});

test("APtyProcessSeesATerminalAndItsSize", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  await using p = await lease.startProcess("test -t 0 && echo tty; stty size; read x; stty size", { tty: true, cols: 100, rows: 40 });
  await waitFor("the first size", async () => (await p.output({ waitMs: 1000 })).stdout.includes("40 100"));
  await p.resize(120, 50);
  await p.writeStdin("\n");
  const r = await p.wait("10s");
  assert.ok(r.stdout.includes("tty") && r.stdout.includes("50 120"), r.stdout);
});

test("ABackgroundServerIsReachedByALaterCommand", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  await lease.putFile("site/index.html", "hello from the sandbox\n");
  const port = 20000 + (process.pid % 20000);
  await using server = await lease.startProcess(`exec python3 -m http.server ${port} --bind 127.0.0.1`, { cwd: "/workspace/site" });
  const fetch = `import sys,time,urllib.request as u
for _ in range(200):
    try: print(u.urlopen(sys.argv[1]).read().decode(), end=""); break
    except OSError: time.sleep(0.05)`;
  const r = await lease.exec(["python3", "-c", fetch, `http://127.0.0.1:${port}/index.html`], { timeout: "30s" });
  assert.equal(r.stdout, "hello from the sandbox\n");
  await waitFor("the request in its log", async () => (await server.output({ waitMs: 1000 })).stderr.includes("GET /index.html"));
});

test("StreamedOutputArrivesBeforeTheCommandEnds", async () => {
  // The command ends only once the test has written `go`, which it does after the first event.
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  const stream = await lease.execStream("i=0; while [ ! -f go ]; do echo tick $i; i=$((i+1)); sleep 0.1; done; echo done", { timeout: "30s" });
  assert.ok(stream instanceof ExecStream);
  const events: StreamEvent[] = [];
  for await (const ev of stream) {
    if (events.length === 0) {
      assert.equal(ev.type, "stdout");
      assert.ok(ev.type === "stdout" && ev.data.startsWith("tick 0\n"));
      assert.equal(stream.exit, undefined);
      await lease.putFile("go", "");
    }
    events.push(ev);
  }
  const last = events[events.length - 1];
  assert.ok(last && last.type === "exit" && last.exitCode === 0 && !last.timedOut, JSON.stringify(last));
  assert.equal(events.filter((e) => e.type === "exit").length, 1);
  assert.ok(joined(events, "stdout").endsWith("\ndone\n"));
  assert.ok(stream.closed);
});

test("ExecuteStreamKeepsEachStreamsOrder", async () => {
  const script = "for i in $(seq 1 10); do echo out$i; echo err$i >&2; sleep 0.02; done; exit 3";
  const events: StreamEvent[] = [];
  for await (const ev of await client.executeStream(script, { pool: "shell" })) events.push(ev);
  const want = (name: string) => Array.from({ length: 10 }, (_, i) => `${name}${i + 1}\n`).join("");
  assert.equal(joined(events, "stdout"), want("out"));
  assert.equal(joined(events, "stderr"), want("err"));
  const last = events[events.length - 1];
  assert.ok(last && last.type === "exit" && last.exitCode === 3);
  const r = await (await client.executeStream("echo partial; sleep 30", { pool: "shell", timeout: 500 })).result();
  assert.equal(r.stdout, "partial\n");
  assert.equal(r.timedOut, true);
});

test("LeavingAStreamEarlyStopsTheCommand", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  const marker = "ts-stream-marker";
  const count = `grep -l ${marker.replace("marker", "marke[r]")} /proc/[0-9]*/cmdline 2>/dev/null | wc -l`;
  const stream = await lease.execStream(["sh", "-c", "while :; do echo tick; sleep 0.1; done", marker], { timeout: "60s" });
  for await (const ev of stream) {
    assert.equal(ev.type, "stdout");
    break; // return(): drops the connection
  }
  assert.ok(stream.closed);
  await waitFor("the streamed command stopped", async () => (await lease.exec(count)).stdout.trim() === "0");
  const p = await lease.startProcess(["sh", "-c", "while :; do echo tick; sleep 0.1; done", marker]);
  assert.equal((await lease.exec(count)).stdout.trim(), "1"); // the count sees one that runs
  const follow = await p.follow();
  await follow.next();
  follow.close(); // a followed process goes on
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await lease.processes()).find((q) => q.id === p.id)?.running, true);
  await p.kill();
  await waitFor("the killed process is gone", async () => (await lease.exec(count)).stdout.trim() === "0");
});

test("ShellStreamsAndSessionShells", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  await using sh = await lease.openShell();
  await sh.run("export X=streamed");
  const r = await (await sh.stream("for i in 1 2; do echo $X $i; sleep 0.1; done")).result();
  assert.equal(r.stdout, "streamed 1\nstreamed 2\n");
  // Leaving a shell's stream early interrupts its command; the shell and its state stay.
  for await (const ev of await sh.stream("sh -c 'while :; do echo tick; sleep 0.1; done'")) {
    assert.equal(ev.type, "stdout");
    break;
  }
  let after: string | undefined;
  await waitFor("the shell answers again", async () => {
    try {
      after = (await sh.run("echo $X")).stdout;
      return true;
    } catch (e) {
      if (e instanceof ConflictError && !(e instanceof ShellExitedError)) return false; // still busy
      throw e;
    }
  });
  assert.equal(after, "streamed\n");

  await client.execute("export A=1; cd /tmp", { pool: "shell", session, shell: "main" });
  const again = await client.execute("echo $A; pwd", { pool: "shell", session, shell: "main" });
  assert.equal(again.stdout, "1\n/tmp\n");
  const streamed = await client.executeStream("echo $A; sleep 1; pwd", { pool: "shell", session, shell: "main" });
  const first = await streamed.next();
  assert.deepEqual(first.value, { type: "stdout", data: "1\n" });
  assert.equal((await streamed.result()).stdout, "1\n/tmp\n");
});

test("PerLeaseEnvFilesAndCwd", async () => {
  await using lease = await client.acquire({
    pool: "shell",
    timeout: "20s",
    env: { MODE: "test" },
    files: { "cfg/app.ini": "x=1\n" },
    cwd: "/tmp",
  });
  assert.equal((await lease.exec("echo $MODE; pwd; cat /workspace/cfg/app.ini")).stdout, "test\n/tmp\nx=1\n");
  await using sh = await lease.openShell();
  assert.equal((await sh.run("echo $MODE; pwd")).stdout, "test\n/tmp\n");
});

test("BadInputToShellsAndProcessesIsTyped", async () => {
  await using lease = await client.acquire({ pool: "shell", timeout: "20s" });
  const e = await rejection(lease.attachShell("no-such-shell").run("true"), NotFoundError);
  assert.equal(e.code, "not_found");
  assert.equal((await rejection(lease.attachProcess("no-such-process").output(), NotFoundError)).status, 404);
  await using sh = await lease.openShell();
  assert.equal((await rejection(sh.run("echo a\u0000b"), InvalidRequestError)).status, 400);
  await using p = await lease.startProcess("wc -c");
  const big = await rejection(p.writeStdin(new Uint8Array(2 << 20)), TooLargeError);
  assert.equal(big.code, "too_large");
  assert.ok(big instanceof PayloadTooLargeError);
  await p.writeStdin(new Uint8Array(1 << 20), true);
  assert.equal((await p.wait("10s")).stdout.trim(), String(1 << 20));
});
