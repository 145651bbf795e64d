"""The package against a real ``warmpool serve`` that tests/scripts/python_client.sh starts
(bubblewrap pools on loopback, with a bearer token): WARMPOOL_URL, WARMPOOL_TOKEN.

Pools: ``shell`` (local, max_size 2) and ``single`` (local, max_size 1: a held lease
exhausts it, so acquiring it again proves the previous lease went back). The server's
max_body is 3m.

    WARMPOOL_URL=http://127.0.0.1:PORT WARMPOOL_TOKEN=T python3 -m unittest discover -s tests -v
"""

from __future__ import annotations

import datetime
import os
import pickle
import re
import socket
import threading
import time
import unittest
from typing import Callable, Optional

import warmpool
from warmpool import (
    BadRequest,
    Client,
    ExecResult,
    ExecTimeout,
    NotFound,
    PayloadTooLarge,
    PoolExhausted,
    Unauthorized,
    Unavailable,
    UnknownLease,
    UnknownPool,
    Unreachable,
    WarmpoolError,
)
from warmpool.errors import error_class

URL = os.environ.get("WARMPOOL_URL", "")
TOKEN = os.environ.get("WARMPOOL_TOKEN", "")


def setUpModule() -> None:
    if not URL or not TOKEN:
        raise RuntimeError("WARMPOOL_URL and WARMPOOL_TOKEN must name the server under test")


def client(**kw) -> Client:
    kw.setdefault("timeout", 60)
    return Client(URL, kw.pop("token", TOKEN), **kw)


def wait_for(what: str, cond: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g} s")
        time.sleep(0.05)


class PackageTest(unittest.TestCase):
    def test_installed_package_carries_its_type_marker(self) -> None:
        where = os.path.dirname(warmpool.__file__)
        self.assertTrue(os.path.isfile(os.path.join(where, "py.typed")), where)
        expected = os.environ.get("WARMPOOL_PY_EXPECT_UNDER")
        if expected:  # the script checks that the tests use the installed copy, not the sources
            self.assertTrue(os.path.realpath(where).startswith(os.path.realpath(expected)),
                            f"warmpool imported from {where}, not from under {expected}")

    def test_errors_keep_their_fields_through_pickle(self) -> None:
        e = PoolExhausted(503, "pool_exhausted", "no sandbox", retry_after=1.0, body={"x": 1})
        back = pickle.loads(pickle.dumps(e))
        self.assertIs(type(back), PoolExhausted)
        self.assertEqual((back.status, back.code, back.message, back.retry_after, back.body),
                         (503, "pool_exhausted", "no sandbox", 1.0, {"x": 1}))
        self.assertEqual(str(back), str(e))

    def test_durations_are_seconds_or_the_servers_strings(self) -> None:
        from warmpool.types import duration_ms, wire_duration

        self.assertEqual(wire_duration(1.5), 1500)
        self.assertEqual(wire_duration(datetime.timedelta(milliseconds=250)), 250)
        self.assertEqual(wire_duration("2m"), "2m")
        self.assertEqual(duration_ms("1h30m"), 5400000.0)
        self.assertEqual(duration_ms("5"), 5000.0)
        with self.assertRaises(ValueError):
            duration_ms("soon")
        with self.assertRaises(TypeError):
            wire_duration(True)  # type: ignore[arg-type]


    def test_every_error_code_of_the_server_has_its_class(self) -> None:
        """The codes in include/warmpool/types.hpp (Errc) and docs/openapi.yaml (Error.code)
        each map to their own subclass: a code added to the server fails here until the
        client knows it."""
        source = os.environ.get("WARMPOOL_SOURCE_DIR")
        if not source:
            self.skipTest("WARMPOOL_SOURCE_DIR is not set")
        with open(os.path.join(source, "include", "warmpool", "types.hpp")) as f:
            header = f.read()
        errc = re.search(r"enum class Errc[^{]*\{(.*?)\};", header, re.S)
        assert errc is not None
        codes = set(re.findall(r"^\s*([a-z_]+)\s*(?:=\s*\d+\s*)?,", errc.group(1), re.M)) - {"none"}
        with open(os.path.join(source, "docs", "openapi.yaml")) as f:
            spec = f.read()
        enum = re.search(r"code:\s*type: string\s*enum: \[([^\]]*)\]", spec, re.S)
        assert enum is not None
        codes |= {c.strip() for c in enum.group(1).split(",")}
        self.assertGreaterEqual(len(codes), 15, codes)
        for code in sorted(codes):
            cls = error_class(code)
            self.assertIsNot(cls, WarmpoolError, f"no class for the server's error code {code!r}")
            self.assertIn(cls.__name__, warmpool.__all__)
        self.assertIs(error_class("some_future_code", 503), Unavailable)
        self.assertIs(error_class("some_future_code", 500), WarmpoolError)

    def test_a_kept_alive_connection_the_server_closed_is_replaced(self) -> None:
        """A server may close an idle kept-alive connection at any time; the next request
        must not fail for it. This one answers once per connection, then hangs up."""
        connections = []
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        body = b'{"status": "ok", "pools": 1}'

        def serve() -> None:
            for _ in range(3):
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                connections.append(conn)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Connection: keep-alive\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                conn.close()

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        try:
            c = Client("http://127.0.0.1:%d" % listener.getsockname()[1], token="", timeout=5)
            self.assertEqual(c.health().pools, 1)
            time.sleep(0.2)  # the server has hung up by now
            self.assertEqual(c.health().pools, 1)
            self.assertEqual(len(connections), 2)
            c.close()
        finally:
            listener.close()


class ExecuteTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = client()

    def tearDown(self) -> None:
        self.c.close()

    def test_execute_returns_the_output_of_a_command(self) -> None:
        r = self.c.execute(["echo", "hello", "warmpool"], pool="shell")
        self.assertIsInstance(r, ExecResult)
        self.assertEqual(r.stdout, "hello warmpool\n")
        self.assertEqual(r.stderr, "")
        self.assertEqual((r.exit_code, r.signal, r.timed_out, r.truncated), (0, 0, False, False))
        self.assertTrue(r.ok)
        self.assertEqual(r.pool, "shell")
        self.assertTrue(r.container and r.node)
        self.assertGreater(r.duration_ms, 0)
        self.assertEqual(r.duration, datetime.timedelta(milliseconds=r.duration_ms))
        self.assertIsNone(r.lease)

    def test_execute_runs_a_shell_string_with_stdin_env_and_cwd(self) -> None:
        r = self.c.execute('read line; echo "$GREETING $line from $(pwd)"', pool="shell",
                           stdin="world\n", env={"GREETING": "hello"}, cwd="/tmp")
        self.assertEqual(r.stdout, "hello world from /tmp\n")
        self.assertEqual(self.c.execute(["cat"], pool="shell", stdin=b"bytes in\n").stdout, "bytes in\n")

    def test_a_non_zero_exit_is_a_result_not_an_error(self) -> None:
        r = self.c.execute("echo oops >&2; exit 3", pool="shell")
        self.assertEqual((r.exit_code, r.stderr, r.timed_out), (3, "oops\n", False))
        self.assertFalse(r.ok)

    def test_output_over_the_limit_is_truncated(self) -> None:
        r = self.c.execute("head -c 5000 /dev/zero | tr '\\0' x", pool="shell", output_limit="1k")
        self.assertTrue(r.truncated)
        self.assertEqual(r.stdout, "x" * 1024)

    def test_a_command_over_its_timeout_raises_exec_timeout_with_partial_output(self) -> None:
        with self.assertRaises(ExecTimeout) as cm:
            self.c.execute("echo started; sleep 30; echo never", pool="shell", timeout=0.5)
        e = cm.exception
        self.assertIsInstance(e, WarmpoolError)
        self.assertEqual((e.status, e.code), (504, "exec_timeout"))
        self.assertTrue(e.result.timed_out)
        self.assertEqual(e.result.stdout, "started\n")
        self.assertLess(e.result.duration_ms, 10_000)

    def test_raise_on_timeout_false_returns_the_timed_out_result(self) -> None:
        t0 = time.monotonic()
        r = self.c.execute(["sh", "-c", "echo partial; sleep 30"], pool="shell", timeout="300ms",
                           raise_on_timeout=False)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertTrue(r.timed_out)
        self.assertFalse(r.ok)
        self.assertEqual(r.stdout, "partial\n")

    def test_malformed_requests_are_bad_requests_naming_the_field(self) -> None:
        with self.assertRaises(BadRequest) as cm:
            self.c.execute([], pool="shell")
        self.assertEqual((cm.exception.status, cm.exception.code), (400, "invalid_request"))
        self.assertIn("command", cm.exception.message)
        with self.assertRaises(BadRequest) as cm:
            self.c.execute(["true"], pool="shell", timeout="soon")
        self.assertIn("timeout", cm.exception.message)
        self.assertIs(warmpool.InvalidRequest, BadRequest)

    def test_unknown_pool_is_a_typed_not_found(self) -> None:
        with self.assertRaises(UnknownPool) as cm:
            self.c.execute(["true"], pool="no-such-pool")
        e = cm.exception
        self.assertEqual((e.status, e.code), (404, "unknown_pool"))
        self.assertIsInstance(e, NotFound)
        self.assertIn("no-such-pool", e.message)
        with self.assertRaises(UnknownPool):
            self.c.acquire("no-such-pool")
        with self.assertRaises(UnknownPool):
            self.c.pool("no-such-pool")

    def test_requests_without_the_right_token_are_unauthorized(self) -> None:
        for bad in (client(token=""), client(token=TOKEN + "-wrong")):
            self.addCleanup(bad.close)
            with self.assertRaises(Unauthorized) as cm:
                bad.pools()
            self.assertEqual((cm.exception.status, cm.exception.code), (401, "unauthorized"))
            with self.assertRaises(Unauthorized):
                bad.execute(["true"], pool="shell")
            with self.assertRaises(Unauthorized):
                bad.acquire("shell")
            self.assertEqual(bad.health().status, "ok")  # liveness needs no token

    def test_sessions_keep_their_sandbox_and_files(self) -> None:
        session = f"py-session-{os.getpid()}"
        first = self.c.execute("echo kept > session.txt", pool="shell", session=session)
        second = self.c.execute(["cat", "session.txt"], pool="shell", session=session)
        self.assertEqual(second.container, first.container)
        self.assertEqual(second.session, session)
        self.assertTrue(second.lease)
        self.assertEqual(second.stdout, "kept\n")
        # Holding the session as a lease: same sandbox, same files; the session's executes
        # wait their turn (400) until the lease goes back to the session.
        with self.c.lease("shell", session=session) as lease:
            self.assertEqual(lease.session, session)
            self.assertEqual(lease.container, first.container)
            self.assertEqual(lease.read_text("session.txt"), "kept\n")
            lease.write_file("session.txt", "changed under the lease\n")
            with self.assertRaises(BadRequest):
                self.c.execute(["true"], pool="shell", session=session)
        after = self.c.execute(["cat", "session.txt"], pool="shell", session=session)
        self.assertEqual(after.stdout, "changed under the lease\n")

    def test_concurrent_calls_share_one_client(self) -> None:
        errors = []
        outputs = []

        def run(i: int) -> None:
            try:
                for j in range(3):
                    outputs.append(self.c.execute(["echo", f"{i}-{j}"], pool="shell").stdout)
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(outputs), sorted(f"{i}-{j}\n" for i in range(6) for j in range(3)))


class LeaseTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = client()

    def tearDown(self) -> None:
        self.c.close()

    def assert_gone(self, lease_id: str) -> None:
        with self.assertRaises(UnknownLease):
            self.c.get_lease(lease_id)

    def test_a_lease_runs_commands_and_moves_files_until_released(self) -> None:
        lease = self.c.acquire("shell", tenant="py-client")
        try:
            self.assertEqual((lease.pool, lease.tenant), ("shell", "py-client"))
            self.assertGreater(lease.info.expires_in_ms, 0)
            self.assertFalse(lease.released)
            lease.write_file("notes.txt", "written by the client\n")
            cat = lease.exec(["cat", "notes.txt"])
            self.assertEqual((cat.stdout, cat.lease), ("written by the client\n", lease.id))
            lease.exec("tr a-z A-Z < notes.txt > upper.txt")
            self.assertEqual(lease.read_text("upper.txt"), "WRITTEN BY THE CLIENT\n")
            self.assertEqual(lease.exec(["cat"], stdin="piped\n").stdout, "piped\n")
            self.assertEqual(lease.refresh().id, lease.id)
        finally:
            lease.release()
        self.assertTrue(lease.released)
        lease.release()  # a second release does nothing
        with self.assertRaises(UnknownLease):
            lease.exec(["true"])

    def test_files_round_trip_byte_for_byte(self) -> None:
        every_byte = bytes(range(256)) * 4
        noise = os.urandom(20_000)
        with self.c.lease("shell") as lease:
            lease.write_file("bin/every-byte.bin", every_byte)  # parent directories are made
            lease.write_file("noise.bin", bytearray(noise))
            lease.write_file("utf8.txt", "grüße ✓\n")
            lease.write_file("empty", b"")
            self.assertEqual(lease.read_file("bin/every-byte.bin"), every_byte)
            self.assertEqual(lease.read_file("noise.bin"), noise)
            self.assertEqual(lease.read_text("utf8.txt"), "grüße ✓\n")
            self.assertEqual(lease.read_file("empty"), b"")
            # What the sandbox sees is the same bytes.
            self.assertEqual(lease.exec("wc -c < noise.bin").stdout.strip(), str(len(noise)))
            self.assertEqual(lease.exec("od -An -tx1 -N3 -j255 bin/every-byte.bin").stdout.split(),
                             ["ff", "00", "01"])
            lease.exec("printf '\\000\\377\\200end' > made-by-command.bin")
            self.assertEqual(lease.read_file("made-by-command.bin"), b"\x00\xff\x80end")

    def test_reading_a_missing_file_is_a_bad_request(self) -> None:
        with self.c.lease("shell") as lease:
            with self.assertRaises(BadRequest) as cm:
                lease.read_file("does/not/exist")
            self.assertEqual(cm.exception.status, 400)

    def test_a_body_over_the_servers_limit_is_payload_too_large(self) -> None:
        with self.c.lease("shell") as lease:
            with self.assertRaises(PayloadTooLarge) as cm:
                lease.write_file("big.bin", b"\0" * (4 << 20))
            self.assertEqual((cm.exception.status, cm.exception.code), (413, "payload_too_large"))

    def test_the_with_block_releases_the_lease_on_exit(self) -> None:
        with self.c.lease("single", timeout="20s") as lease:
            self.assertEqual(lease.exec(["echo", "scoped"]).stdout, "scoped\n")
            lease_id = lease.id
            self.assertEqual(self.c.pool("single").leased, 1)
        self.assertTrue(lease.released)
        self.assert_gone(lease_id)
        # `single` has one sandbox: acquiring it again proves the lease was given back.
        again = self.c.acquire("single", timeout="20s")
        again.release()

    def test_the_with_block_releases_the_lease_when_the_body_raises(self) -> None:
        seen: Optional[str] = None
        with self.assertRaisesRegex(RuntimeError, "the body failed"):
            with self.c.lease("single", timeout="20s") as lease:
                seen = lease.id
                raise RuntimeError("the body failed")
        assert seen is not None
        self.assertTrue(lease.released)
        self.assert_gone(seen)
        again = self.c.acquire("single", timeout="20s")
        again.release()

    def test_a_broken_or_failed_body_releases_dirty(self) -> None:
        def dirty() -> int:
            return self.c.pool("single").retired.get("dirty", 0)

        before = dirty()
        with self.assertRaises(ExecTimeout):  # the server's rule: a timed-out sandbox is replaced
            with self.c.lease("single", timeout="20s") as lease:
                lease.exec("sleep 30", timeout=0.3)
        wait_for("the timed-out lease's sandbox retired dirty", lambda: dirty() == before + 1)
        with self.assertRaises(KeyError):  # an ordinary error: reset, reused
            with self.c.lease("single", timeout="20s"):
                raise KeyError("x")
        with self.assertRaises(KeyError):  # ... unless the lease asks for dirty on any error
            with self.c.lease("single", timeout="20s", dirty_on_error=True):
                raise KeyError("x")
        wait_for("the dirty_on_error lease's sandbox retired dirty", lambda: dirty() == before + 2)
        self.assertEqual(dirty(), before + 2)

    def test_an_exhausted_pool_raises_pool_exhausted_with_retry_after(self) -> None:
        with self.c.lease("single", timeout="20s"):
            with self.assertRaises(PoolExhausted) as cm:
                self.c.acquire("single", timeout=0.2)
            e = cm.exception
            self.assertEqual((e.status, e.code, e.retry_after), (503, "pool_exhausted", 1.0))
            self.assertIsInstance(e, Unavailable)

    def test_an_unknown_lease_is_a_typed_not_found(self) -> None:
        for call in (lambda: self.c.exec("no-such-lease", ["true"]),
                     lambda: self.c.read_file("no-such-lease", "x"),
                     lambda: self.c.write_file("no-such-lease", "x", b"y"),
                     lambda: self.c.release("no-such-lease"),
                     lambda: self.c.get_lease("no-such-lease"),
                     lambda: self.c.attach("no-such-lease")):
            with self.assertRaises(UnknownLease) as cm:
                call()
            self.assertEqual((cm.exception.status, cm.exception.code), (404, "unknown_lease"))
            self.assertIsInstance(cm.exception, NotFound)

    def test_attach_uses_a_lease_acquired_elsewhere(self) -> None:
        lease = self.c.acquire("shell")
        other = client()
        try:
            attached = other.attach(lease.id)
            self.assertEqual((attached.id, attached.container), (lease.id, lease.container))
            attached.write_file("from-other.txt", "hi")
            self.assertEqual(lease.read_text("from-other.txt"), "hi")
            attached.release()
            self.assert_gone(lease.id)
            lease.release()  # already gone on the server: counts as released, no error
            self.assertTrue(lease.released)
        finally:
            other.close()


class IntrospectionTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = client()

    def tearDown(self) -> None:
        self.c.close()

    def test_pool_stats_are_typed(self) -> None:
        self.c.execute(["true"], pool="shell")
        pools = self.c.pools()
        self.assertEqual(sorted(p.name for p in pools), ["python", "shell", "single"])
        shell = self.c.pool("shell")
        self.assertEqual((shell.backend, shell.max_size, shell.min_idle), ("local", 2, 1))
        self.assertGreaterEqual(shell.executions, 1)
        self.assertGreaterEqual(shell.hits + shell.misses, 1)
        self.assertTrue(0.0 <= shell.hit_rate <= 1.0)
        self.assertTrue(shell.containers)
        self.assertTrue(all(isinstance(c.state, str) and c.state and c.age_ms >= 0 for c in shell.containers))
        self.assertEqual(sum(shell.states.values()), shell.total)
        self.assertEqual(shell.raw["name"], "shell")

    def test_health_readiness_and_metrics(self) -> None:
        h = self.c.health()
        self.assertEqual((h.status, h.pools), ("ok", 3))
        self.assertTrue(self.c.ready())
        self.c.wait_ready(timeout=5)
        self.assertRegex(self.c.metrics(), r'(?m)^warmpool_executions_total\{.*pool="shell".*\} \d+$')

    def test_a_server_that_is_not_there_is_unreachable(self) -> None:
        with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with self.assertRaises(Unreachable) as cm:
            Client(f"http://127.0.0.1:{port}", timeout=5).health()
        self.assertEqual((cm.exception.status, cm.exception.code), (0, "unreachable"))
        self.assertIn("refused", cm.exception.message)

    def test_the_clients_own_timeout_is_unreachable(self) -> None:
        # The client waits `timeout` on top of what the request asks the server to take:
        # a command without its own limit gets 0.5 s here.
        impatient = client(timeout=0.5)
        self.addCleanup(impatient.close)
        with self.assertRaises(Unreachable) as cm:
            impatient.execute(["sleep", "3"], pool="shell")
        self.assertIn("no answer within", cm.exception.message)
        # With the command's own timeout given, the client waits that long on top.
        r = impatient.execute(["sh", "-c", "sleep 1; echo done"], pool="shell", timeout="5s")
        self.assertEqual(r.stdout, "done\n")


if __name__ == "__main__":
    unittest.main()
