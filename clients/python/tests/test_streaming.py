"""Streamed output (chunked NDJSON) through the package: events arrive while the command
runs, each stream keeps its order, the exit comes last, and a client that hangs up
mid-stream leaks neither the process nor the lease."""

from __future__ import annotations

import http.server
import threading
import unittest
from typing import List, Tuple, cast

from support import client, require_server, running_with, wait_for

from warmpool import (
    Client,
    Conflict,
    ContainerFailed,
    Event,
    ExecStream,
    ExitEvent,
    Lease,
    OutputEvent,
    Shell,
    ShellExited,
    Unreachable,
)


def setUpModule() -> None:
    require_server()


TICKER = "while :; do echo tick; sleep 0.1; done"


def split(events: List[Event]) -> Tuple[str, str, List[ExitEvent]]:
    out = "".join(e.data for e in events if isinstance(e, OutputEvent) and e.stream == "stdout")
    err = "".join(e.data for e in events if isinstance(e, OutputEvent) and e.stream == "stderr")
    return out, err, [e for e in events if isinstance(e, ExitEvent)]


class StreamTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = client()
        self.addCleanup(self.c.close)

    def test_the_first_output_arrives_before_the_command_ends(self) -> None:
        """The command cannot end before the test creates a file, which it does only once it
        has seen the first event: so that event was streamed, not buffered to the end."""
        with self.c.lease("shell", timeout="20s") as lease:
            script = "i=0; while [ ! -f go ]; do echo tick $i; i=$((i+1)); sleep 0.1; done; echo done"
            with lease.exec_stream(script, timeout="30s") as events:
                self.assertIsInstance(events, ExecStream)
                self.assertTrue(events.streamed)
                first = next(events)
                assert isinstance(first, OutputEvent)
                self.assertEqual(first.stream, "stdout")
                self.assertTrue(first.data.startswith("tick 0\n"), first.data)
                self.assertIsNone(events.exit)
                lease.write_file("go", "")
                rest = list(events)
            out, err, exits = split([cast(Event, first)] + rest)
            self.assertTrue(out.endswith("\ndone\n"), out[-100:])
            self.assertEqual(err, "")
            self.assertEqual(len(exits), 1)
            self.assertIs(rest[-1], exits[0])
            self.assertEqual((exits[0].exit_code, exits[0].signal, exits[0].timed_out), (0, 0, False))
            self.assertTrue(exits[0].ok)
            self.assertGreater(exits[0].duration_ms, 0)
            self.assertTrue(events.closed)

    def test_execute_streams_each_stream_in_its_order(self) -> None:
        script = "for i in $(seq 1 20); do echo out$i; echo err$i >&2; sleep 0.02; done; exit 3"
        with self.c.execute_stream(script, pool="shell") as events:
            got = list(events)
        out, err, exits = split(got)
        self.assertEqual(out, "".join(f"out{i}\n" for i in range(1, 21)))
        self.assertEqual(err, "".join(f"err{i}\n" for i in range(1, 21)))
        self.assertEqual([type(e) for e in got[-1:]], [ExitEvent])
        self.assertEqual(exits[0].exit_code, 3)
        self.assertGreater(sum(isinstance(e, OutputEvent) for e in got), 2)  # not one lump

    def test_execute_stream_sends_the_first_line_on_its_own(self) -> None:
        with self.c.execute_stream(["sh", "-c", "echo first; sleep 1; echo last"], pool="shell") as events:
            self.assertTrue(events.streamed)
            first = next(events)
            self.assertEqual(first, OutputEvent("stdout", "first\n"))
            r = events.result()
        self.assertEqual((r.stdout, r.exit_code), ("first\nlast\n", 0))

    def test_a_timed_out_stream_ends_with_timed_out_set(self) -> None:
        r = self.c.execute_stream("echo partial; sleep 30", pool="shell", timeout=0.5).result()
        self.assertTrue(r.timed_out)
        self.assertEqual(r.stdout, "partial\n")
        self.assertFalse(r.ok)

    def test_stdin_env_and_cwd_reach_a_streamed_command(self) -> None:
        r = self.c.execute_stream('read x; echo "$X $x $(pwd)"', pool="shell", stdin="in\n",
                                  env={"X": "env"}, cwd="/tmp").result()
        self.assertEqual(r.stdout, "env in /tmp\n")

    def test_a_shell_command_streams_and_keeps_the_shells_state(self) -> None:
        with self.c.lease("shell", timeout="20s") as lease, lease.shell() as sh:
            sh.run("export X=streamed; cd /tmp")
            with sh.stream("for i in 1 2 3; do echo $X $i; sleep 0.1; done; pwd >&2") as events:
                r = events.result()
            self.assertEqual((r.stdout, r.stderr, r.exit_code), ("streamed 1\nstreamed 2\nstreamed 3\n", "/tmp\n", 0))
            self.assertEqual(sh.run("echo $X").stdout, "streamed\n")

    def test_following_a_process_streams_its_output_from_an_offset(self) -> None:
        with self.c.lease("shell", timeout="20s") as lease:
            p = lease.start_process("for i in 1 2 3; do echo n$i; sleep 0.2; done; echo e >&2")
            self.assertEqual(p.follow().result().stdout, "n1\nn2\nn3\n")
            with p.follow(offset=3, stderr_offset=2) as events:
                r = events.result()
            self.assertEqual((r.stdout, r.stderr, r.exit_code), ("n2\nn3\n", "", 0))

    def test_a_client_gone_mid_stream_leaks_no_process(self) -> None:
        marker = "stream-marker-lease"
        with self.c.lease("shell", timeout="20s") as lease:
            events = lease.exec_stream(["sh", "-c", TICKER, marker], timeout="60s")
            self.assertIsInstance(next(events), OutputEvent)
            self.assertEqual(running_with(lease, marker), 1)  # the check sees it while it runs
            events.close()
            self.assertTrue(events.closed)
            wait_for("the streamed command stopped", lambda: running_with(lease, marker) == 0)
            self.assertEqual([p for p in lease.processes() if marker in p.command], [])
            self.assertEqual(lease.exec("echo usable").stdout, "usable\n")

    def test_a_client_gone_mid_shell_stream_interrupts_only_the_command(self) -> None:
        marker = "stream-marker-shell"
        with self.c.lease("shell", timeout="20s") as lease, lease.shell() as sh:
            sh.run("export KEPT=1; cd /tmp")
            events = sh.stream(f"sh -c '{TICKER}' {marker}")
            next(events)
            self.assertEqual(running_with(lease, marker), 1)  # the check sees it while it runs
            events.close()
            wait_for("the shell's command stopped", lambda: running_with(lease, marker) == 0)
            wait_for("the shell answers again", lambda: _answers(sh))
            self.assertEqual(sh.run("echo $KEPT; pwd").stdout, "1\n/tmp\n")

    def test_a_client_gone_mid_execute_gives_the_sandbox_back(self) -> None:
        marker = "stream-marker-execute"
        events = self.c.execute_stream(["sh", "-c", TICKER, marker], pool="single", timeout="60s")
        next(events)
        self.assertEqual(self.c.pool("single").leased, 1)
        del events  # dropping the last reference closes the connection too
        wait_for("the execute's sandbox went back", lambda: self.c.pool("single").leased == 0)
        with self.c.lease("single", timeout="20s") as lease:  # one sandbox: it is this one
            self.assertEqual(running_with(lease, marker), 0)

    def test_a_followed_process_outlives_its_reader(self) -> None:
        with self.c.lease("shell", timeout="20s") as lease:
            with lease.start_process(TICKER) as p:
                with p.follow() as events:
                    next(events)
                wait_for("more output after the reader left",
                         lambda: p.output().offset > 5 * len("tick\n"))
                self.assertTrue({q.id: q for q in lease.processes()}[p.id].running)


def _answers(sh: Shell) -> bool:
    """The shell runs a command (False while it is still busy with the last one; a shell
    that ended raises ShellExited)."""
    try:
        return sh.run("true").ok
    except ShellExited:
        raise
    except Conflict:
        return False


class FakeStreamTest(unittest.TestCase):
    """The client's side of the framing against a server that sends given lines."""

    def serve(self, body: bytes, content_type: str = "application/x-ndjson") -> Client:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in body.splitlines(keepends=True):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        c = Client(f"http://127.0.0.1:{server.server_address[1]}", token="", timeout=5)
        self.addCleanup(c.close)
        return c

    def test_unknown_event_types_are_skipped_and_the_exit_ends_the_stream(self) -> None:
        c = self.serve(b'{"type":"stdout","data":"a"}\n{"type":"progress"}\n\n'
                       b'{"type":"stderr","data":"b"}\n{"type":"exit","exit_code":2,"signal":0,'
                       b'"duration_ms":1.5,"timed_out":false,"truncated":true}\n')
        got = list(c.execute_stream("x"))
        self.assertEqual(got[:2], [OutputEvent("stdout", "a"), OutputEvent("stderr", "b")])
        self.assertEqual(got[2], ExitEvent(2, 0, 1.5, False, True))

    def test_an_error_line_raises_its_typed_error(self) -> None:
        c = self.serve(b'{"type":"stdout","data":"a"}\n'
                       b'{"type":"error","error":{"code":"container_failed","message":"gone"}}\n')
        events = c.execute_stream("x")
        self.assertEqual(next(events), OutputEvent("stdout", "a"))
        with self.assertRaises(ContainerFailed) as cm:
            next(events)
        self.assertEqual((cm.exception.status, cm.exception.code, cm.exception.message),
                         (502, "container_failed", "gone"))

    def test_a_stream_cut_before_the_exit_is_unreachable(self) -> None:
        c = self.serve(b'{"type":"stdout","data":"a"}\n')
        events = c.execute_stream("x")
        next(events)
        with self.assertRaises(Unreachable):
            next(events)

    def test_a_whole_json_answer_becomes_the_same_events(self) -> None:
        c = self.serve(b'{"stdout":"o","stderr":"e","exit_code":0,"signal":0,"duration_ms":2,'
                       b'"timed_out":false,"truncated":false}', "application/json")
        events = c.execute_stream("x")
        self.assertFalse(events.streamed)
        r = events.result()
        self.assertEqual((r.stdout, r.stderr, r.exit_code, r.duration_ms), ("o", "e", 0, 2.0))


if __name__ == "__main__":
    unittest.main()
