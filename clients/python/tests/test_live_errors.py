"""Bad input to shells and processes gets its typed error, and leaves the lease usable:
unknown ids (404 not_found), stdin after close (409 conflict), a busy shell (409), a stdin
write over 1 MiB (413 too_large), a NUL byte in a shell command (400)."""

from __future__ import annotations

import unittest
from typing import Callable, List

from support import SESSION, client, require_server

from warmpool import (
    BadRequest,
    Client,
    Conflict,
    Lease,
    NotFound,
    PayloadTooLarge,
    ShellExited,
    TooLarge,
    UnknownLease,
    WarmpoolError,
)


def setUpModule() -> None:
    require_server()


class LiveErrorsTest(unittest.TestCase):
    c: Client
    lease: Lease

    @classmethod
    def setUpClass(cls) -> None:
        cls.c = client()
        cls.lease = cls.c.lease("shell", timeout="20s")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.lease.release()
        cls.c.close()

    def assert_code(self, e: WarmpoolError, status: int, code: str) -> None:
        self.assertEqual((e.status, e.code), (status, code), e.message)
        self.assertTrue(e.message)

    def test_an_unknown_shell_is_not_found(self) -> None:
        ghost = self.lease.attach_shell("no-such-shell")
        with self.assertRaises(NotFound) as cm:
            ghost.run("true")
        self.assert_code(cm.exception, 404, "not_found")
        self.assertNotIsInstance(cm.exception, UnknownLease)
        with self.assertRaises(NotFound):
            ghost.stream("true")
        with self.assertRaises(NotFound):
            self.c._http.request("DELETE", f"/v1/leases/{self.lease.id}/shells/no-such-shell")
        ghost.close()  # closing one that is not there does nothing

    def test_an_unknown_process_is_not_found(self) -> None:
        ghost = self.lease.attach_process("no-such-process")
        calls: List[Callable[[], object]] = [
            ghost.output, ghost.follow, lambda: ghost.write_stdin("x"), lambda: ghost.signal("TERM"),
            lambda: ghost.resize(10, 10), lambda: ghost.wait(1)]
        for call in calls:
            with self.assertRaises(NotFound) as cm:
                call()
            self.assert_code(cm.exception, 404, "not_found")
        ghost.kill()  # forgetting one that is not there does nothing

    def test_shells_and_processes_of_an_unknown_lease(self) -> None:
        gone = self.c.acquire("single", timeout="20s")
        gone.release()
        with self.assertRaises(UnknownLease):
            gone.open_shell()
        with self.assertRaises(UnknownLease):
            gone.start_process("true")
        with self.assertRaises(UnknownLease):
            gone.processes()

    def test_stdin_after_it_was_closed_is_a_conflict(self) -> None:
        with self.lease.start_process(["cat"]) as p:
            p.write_stdin("last\n", close=True)
            with self.assertRaises(Conflict) as cm:
                p.write_stdin("too late\n")
            self.assert_code(cm.exception, 409, "conflict")
            self.assertEqual(p.wait(10).stdout, "last\n")
        with self.lease.start_process("true") as ended:
            ended.wait(10)
            with self.assertRaises(Conflict):
                ended.write_stdin("nobody reads this\n")

    def test_a_stdin_write_over_one_mib_is_too_large(self) -> None:
        with self.lease.start_process("wc -c") as p:
            with self.assertRaises(TooLarge) as cm:
                p.write_stdin(b"x" * (2 << 20))
            self.assert_code(cm.exception, 413, "too_large")
            self.assertIsInstance(cm.exception, PayloadTooLarge)
            self.assertEqual(p.write_stdin(b"y" * (1 << 20), close=True), 1 << 20)  # 1 MiB is fine
            self.assertEqual(p.wait(10).stdout.strip(), str(1 << 20))

    def test_a_shell_command_with_a_nul_byte_is_a_bad_request(self) -> None:
        with self.lease.shell() as sh:
            with self.assertRaises(BadRequest) as cm:
                sh.run("echo a\0b")
            self.assert_code(cm.exception, 400, "invalid_request")
            self.assertIn("command", cm.exception.message)
            self.assertEqual(sh.run("echo fine").stdout, "fine\n")
        with self.assertRaises(BadRequest):
            self.c.execute("echo a\0b", pool="shell", session=SESSION, shell="main")

    def test_a_second_command_while_the_shell_is_busy_is_a_conflict(self) -> None:
        # The command runs well past the server's 2 s long poll of the stream: this server
        # holds the sandbox's other calls behind that poll, so a shorter command may have
        # ended by the time the second one is looked at.
        with self.lease.shell() as sh:
            with sh.stream("echo started; sleep 6; echo finished") as events:
                next(events)
                with self.assertRaises(Conflict) as cm:
                    sh.run("echo meanwhile")
                self.assertEqual(cm.exception.status, 409)
                self.assertEqual(events.result().stdout, "started\nfinished\n")
            self.assertEqual(sh.run("echo after").stdout, "after\n")

    def test_a_shell_name_is_taken_once(self) -> None:
        with self.lease.open_shell("unique"):
            with self.assertRaises(WarmpoolError) as cm:
                self.lease.open_shell("unique")
            self.assertIn(cm.exception.status, (400, 409))

    def test_bad_fields_are_bad_requests(self) -> None:
        with self.lease.start_process("sleep 30") as p:
            with self.assertRaises(BadRequest) as cm:
                p.signal("NO-SUCH-SIGNAL")
            self.assertIn("signal", cm.exception.message)
            with self.assertRaises(BadRequest):
                p.output(offset=-1)
        with self.assertRaises(BadRequest):
            self.lease.start_process([])
        with self.assertRaises(BadRequest):  # a session's shell runs a string
            self.c.execute(["echo", "argv"], pool="shell", session=SESSION, shell="main")
        with self.assertRaises(BadRequest):  # ... and needs the session
            self.c.execute("echo", pool="shell", shell="main")

    def test_a_shell_that_exited_is_its_own_conflict(self) -> None:
        self.assertTrue(issubclass(ShellExited, Conflict))


if __name__ == "__main__":
    unittest.main()
