"""The agent transcript of issue #15 through the package: a persistent shell (cd, export,
functions, a timeout that leaves the shell usable), a background web server reached by a
later command, its output read from an offset, stdin to a running process, and a PTY.

Runs against the server tests/scripts/python_client.sh starts (see support.py)."""

from __future__ import annotations

import os
import time
import unittest

from support import client, require_server, wait_for

from warmpool import ExecTimeout, Process, Shell, ShellExited, StillRunning


def setUpModule() -> None:
    require_server()


# Fetches a URL inside the sandbox, retrying while the server there starts.
FETCH = """
import sys, time, urllib.request
for _ in range(200):
    try:
        sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit("never answered")
"""


class TranscriptTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = client()
        self.addCleanup(self.c.close)
        self.lease = self.c.lease("shell", timeout="20s")
        self.addCleanup(self.lease.release)

    def test_a_shell_keeps_the_directory_variables_and_functions(self) -> None:
        with self.lease.shell() as sh:
            self.assertIsInstance(sh, Shell)
            r = sh.run("cd /workspace && mkdir p && cd p")
            self.assertEqual((r.exit_code, r.stdout, r.stderr), (0, "", ""))
            self.assertEqual(sh.run("export GREETING=hi").exit_code, 0)
            r = sh.run("echo $GREETING > f; pwd")
            self.assertEqual((r.stdout, r.exit_code), ("/workspace/p\n", 0))
            self.assertEqual(self.lease.read_text("p/f"), "hi\n")
            sh.run('greet() { echo "$GREETING, $1"; }')
            self.assertEqual(sh.run("greet agent").stdout, "hi, agent\n")
            # Each command has its own exit code and streams, with no prompt or marker text.
            self.assertEqual(sh.run("(exit 7)").exit_code, 7)
            r = sh.run("echo to-err >&2; false")
            self.assertEqual((r.stdout, r.stderr, r.exit_code), ("", "to-err\n", 1))
            self.assertEqual(sh.run("printf 'no newline at the end'").stdout, "no newline at the end")
            self.assertEqual(sh.run("printf 'a\\nb'; printf 'c' >&2").stdout, "a\nb")
            # A plain exec does not share the shell's state.
            self.assertEqual(self.lease.exec("echo ${GREETING:-unset}; pwd").stdout, "unset\n/workspace\n")
        self.assertTrue(sh.closed)

    def test_a_command_over_its_timeout_is_interrupted_and_the_shell_goes_on(self) -> None:
        with self.lease.shell() as sh:
            sh.run("export KEPT=yes; cd /tmp")
            t0 = time.monotonic()
            with self.assertRaises(ExecTimeout) as cm:
                sh.run("echo before; sleep 30; echo never", timeout=0.5)
            self.assertLess(time.monotonic() - t0, 15)
            self.assertEqual((cm.exception.status, cm.exception.code), (504, "exec_timeout"))
            self.assertTrue(cm.exception.result.timed_out)
            self.assertEqual(cm.exception.result.stdout, "before\n")
            r = sh.run("echo $KEPT; pwd")
            self.assertEqual((r.stdout, r.exit_code), ("yes\n/tmp\n", 0))
            r = sh.run("sleep 30", timeout="300ms", raise_on_timeout=False)
            self.assertTrue(r.timed_out)
            self.assertEqual(sh.run("echo still here").stdout, "still here\n")

    def test_named_shells_are_separate(self) -> None:
        with self.lease.open_shell("build") as a, self.lease.open_shell("test") as b:
            self.assertEqual((a.id, b.id), ("build", "test"))
            a.run("export ONLY_IN_A=1; cd /tmp")
            self.assertEqual(b.run("echo ${ONLY_IN_A:-unset}; pwd").stdout, "unset\n/workspace\n")
            self.assertEqual(self.lease.attach_shell("build").run("echo $ONLY_IN_A").stdout, "1\n")

    def test_a_shell_whose_process_ended_says_so_and_can_be_opened_again(self) -> None:
        sh = self.lease.open_shell("quits")
        try:
            sh.run("exit 3")
        except ShellExited:
            pass  # the exit may be reported by this command or by the next one
        with self.assertRaises(ShellExited) as cm:
            sh.run("echo hello")
        self.assertEqual((cm.exception.status, cm.exception.code), (409, "shell_exited"))
        sh.close()
        with self.lease.open_shell("quits") as again:
            self.assertEqual(again.run("echo back").stdout, "back\n")

    def test_a_background_server_is_reached_by_a_later_command(self) -> None:
        port = 20000 + os.getpid() % 20000
        self.lease.write_file("site/hello.txt", "served from the sandbox\n")
        server = self.lease.start_process(f"exec python3 -u -m http.server {port} --bind 127.0.0.1",
                                          cwd="/workspace/site")
        self.assertIsInstance(server, Process)
        self.assertTrue(server.id)
        with server:
            url = f"http://127.0.0.1:{port}/hello.txt"
            fetched = self.lease.exec(["python3", "-c", FETCH, url], timeout="30s")
            self.assertEqual((fetched.stdout, fetched.exit_code), ("served from the sandbox\n", 0),
                             fetched.stderr)
            listed = {p.id: p for p in self.lease.processes()}
            self.assertIn(server.id, listed)
            self.assertTrue(listed[server.id].running)
            self.assertIsNone(listed[server.id].exit_code)
            self.assertIn("http.server", listed[server.id].command)

            # The server logs each request on stderr: read it, then only what came after.
            def logged(text: str, offset: int) -> bool:
                return text in server.output(0, offset, wait=1).stderr

            wait_for("the request in the server's log", lambda: logged("GET /hello.txt", 0))
            first = server.output()
            self.assertIn('"GET /hello.txt HTTP/1.1" 200', first.stderr)
            self.assertEqual(first.stderr_offset, len(first.stderr.encode()))
            self.assertTrue(first.running)
            self.assertIsNone(first.exit_code)
            self.lease.exec(["python3", "-c", FETCH, url + "?second"], timeout="30s")
            wait_for("the second request in the log", lambda: logged("?second", first.stderr_offset))
            after = server.output(first.offset, first.stderr_offset)
            self.assertNotIn("GET /hello.txt HTTP", after.stderr)
            self.assertIn("GET /hello.txt?second HTTP", after.stderr)
            self.assertEqual(server.output(0, 5).stderr, (first.stderr + after.stderr)[5:])
            # read() remembers its offsets: the second call has nothing new.
            self.assertIn("GET /hello.txt", server.read().stderr)
            self.assertEqual(server.read().stderr, "")

            server.signal("TERM")
            ended = server.wait(10)
            self.assertEqual(ended.signal, 15)
            self.assertFalse(ended.ok)
            gone = {p.id: p for p in self.lease.processes()}[server.id]
            self.assertFalse(gone.running)
            self.assertEqual(gone.signal, 15)
        # Leaving the block forgot it.
        self.assertNotIn(server.id, [p.id for p in self.lease.processes()])

    def test_stdin_is_written_to_a_running_process_and_read_back(self) -> None:
        cat = self.lease.start_process(["cat"])
        self.assertEqual(cat.write_stdin("line one\n"), 9)
        wait_for("cat echoes the first line", lambda: cat.output(wait=1).stdout == "line one\n")
        self.assertEqual(cat.write_stdin(b"line two\n", close=True), 9)
        r = cat.wait(10)
        self.assertEqual((r.stdout, r.exit_code), ("line one\nline two\n", 0))
        done = cat.output()
        self.assertFalse(done.running)
        self.assertEqual(done.exit_code, 0)
        cat.kill()

    def test_a_process_started_with_stdin_reads_it_then_more(self) -> None:
        with self.lease.start_process("cat; echo end", stdin="given at start\n") as p:
            p.write_stdin("written later\n")
            p.close_stdin()
            self.assertEqual(p.wait(10).stdout, "given at start\nwritten later\nend\n")

    def test_a_pty_process_sees_a_terminal_and_its_window_size(self) -> None:
        script = "test -t 0 && echo is-a-tty; stty size; read line; stty size"
        with self.lease.start_process(script, tty=True, cols=100, rows=40) as p:
            wait_for("the first size", lambda: "40 100" in p.output(wait=1).stdout)
            self.assertIn("is-a-tty", p.output().stdout)
            self.assertTrue({q.id: q for q in self.lease.processes()}[p.id].tty)
            p.resize(120, 50)
            p.write_stdin("\n")
            r = p.wait(10)
            self.assertIn("50 120", r.stdout)
            self.assertEqual(r.exit_code, 0)
        not_a_tty = self.lease.start_process("test -t 0 && echo tty || echo no-tty")
        self.assertEqual(not_a_tty.wait(10).stdout, "no-tty\n")

    def test_waiting_on_a_process_that_still_runs_is_a_typed_timeout(self) -> None:
        with self.lease.start_process("sleep 30") as p:
            t0 = time.monotonic()
            with self.assertRaises(StillRunning) as cm:
                p.wait(0.3)
            self.assertLess(time.monotonic() - t0, 10)
            self.assertIsInstance(cm.exception, ExecTimeout)
            self.assertEqual((cm.exception.status, cm.exception.code), (504, "exec_timeout"))
            self.assertTrue({q.id: q for q in self.lease.processes()}[p.id].running)
            p.signal("KILL")
            self.assertEqual(p.wait(10).signal, 9)
        self.assertNotIn(p.id, [q.id for q in self.lease.processes()])


if __name__ == "__main__":
    unittest.main()
