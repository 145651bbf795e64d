"""Per-lease setup at acquire (env, files, cwd: seen by exec, shells and processes, gone for
the next lease of the sandbox, warm hit kept) and the shells of a sticky session."""

from __future__ import annotations

import unittest

from support import SESSION, client, require_server, running_with, wait_for

from warmpool import NotFound, OutputEvent, ShellExited


def setUpModule() -> None:
    require_server()


SECRET = "s3cret-value-for-the-lease"


class LeaseSetupTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = client()
        self.addCleanup(self.c.close)

    def test_env_files_and_cwd_are_the_leases_alone(self) -> None:
        wait_for("the single pool has its warm sandbox", lambda: self.c.pool("single").idle == 1, 60)
        hits = self.c.pool("single").hits
        files = {"cfg/app.ini": "[app]\nmode = test\n", "/tmp/absolute.txt": "absolute\n"}
        with self.c.lease("single", timeout="20s", env={"MODE": "test", "API_KEY": SECRET},
                          files=files, cwd="/tmp") as lease:
            self.assertEqual(self.c.pool("single").hits, hits + 1)  # still a warm hit
            container = lease.container
            r = lease.exec("echo $MODE $API_KEY; pwd; cat /workspace/cfg/app.ini absolute.txt")
            self.assertEqual(r.stdout, f"test {SECRET}\n/tmp\n[app]\nmode = test\nabsolute\n", r.stderr)
            self.assertEqual(lease.read_text("cfg/app.ini"), files["cfg/app.ini"])
            # The command's own env and cwd win.
            r = lease.exec("echo $MODE; pwd", env={"MODE": "mine"}, cwd="/workspace")
            self.assertEqual(r.stdout, "mine\n/workspace\n")
            with lease.shell() as sh:
                self.assertEqual(sh.run("echo $MODE; pwd").stdout, "test\n/tmp\n")
            p = lease.start_process("echo $API_KEY; pwd")
            self.assertEqual(p.wait(10).stdout, f"{SECRET}\n/tmp\n")
            self.assertEqual(lease.exec_stream("echo $MODE").result().stdout, "test\n")
        self.assertNotIn(SECRET, self.c.metrics())
        with self.c.lease("single", timeout="20s") as after:
            self.assertEqual(after.container, container)  # the same sandbox, reset
            r = after.exec("echo ${MODE:-unset} ${API_KEY:-unset}; pwd; ls cfg /tmp/absolute.txt 2>&1 >/dev/null | wc -l")
            self.assertEqual(r.stdout, "unset unset\n/workspace\n2\n")

    def test_files_must_be_text(self) -> None:
        with self.assertRaises(ValueError):
            self.c.acquire("single", files={"bin": b"\xff\xfe"})


class ReleaseTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = client()
        self.addCleanup(self.c.close)

    def test_release_ends_every_shell_and_process(self) -> None:
        marker = "release-marker"
        with self.c.lease("single", timeout="20s") as lease:
            container = lease.container
            sh = lease.open_shell("left-open")
            sh.run(f"sh -c 'sleep 300' {marker}-shell-bg &")  # a shell's own background job
            lease.start_process(["sh", "-c", "sleep 300", f"{marker}-process"])
            tty = lease.start_process(["sh", "-c", "sleep 300", f"{marker}-tty"], tty=True)
            wait_for("all three run", lambda: running_with(lease, marker) == 3)
            self.assertEqual(len(lease.processes()), 2)
            self.assertTrue(tty.id)
            self.assertEqual([(s.id, s.running) for s in lease.shells()], [("left-open", True)])
        with self.c.lease("single", timeout="20s") as after:
            self.assertEqual(after.container, container)  # the same sandbox, reset
            self.assertEqual(running_with(after, marker), 0)
            self.assertEqual(after.processes(), [])
            self.assertEqual(after.shells(), [])
            with self.assertRaises(NotFound):
                after.attach_shell("left-open").run("true")


class SessionShellTest(unittest.TestCase):
    def setUp(self) -> None:
        self.c = client()
        self.addCleanup(self.c.close)

    def test_a_sessions_named_shell_keeps_its_state_between_requests(self) -> None:
        r = self.c.execute("export A=1; cd /tmp", pool="shell", session=SESSION, shell="main")
        self.assertEqual((r.exit_code, r.session), (0, SESSION))
        r = self.c.execute("echo $A; pwd", pool="shell", session=SESSION, shell="main")
        self.assertEqual(r.stdout, "1\n/tmp\n")
        # Another name is another shell; a plain execute of the session has no shell state.
        other = self.c.execute("echo ${A:-unset}", pool="shell", session=SESSION, shell="other")
        self.assertEqual(other.stdout, "unset\n")
        plain = self.c.execute("echo ${A:-unset}", pool="shell", session=SESSION)
        self.assertEqual(plain.stdout, "unset\n")
        self.assertEqual(plain.container, r.container)
        # A shell that exited is opened again on its next use.
        try:
            self.c.execute("exit 3", pool="shell", session=SESSION, shell="quits")
        except ShellExited:
            pass
        again = self.c.execute("echo reopened", pool="shell", session=SESSION, shell="quits")
        self.assertEqual(again.stdout, "reopened\n")
        self.assertEqual(self.c.execute("echo $A", pool="shell", session=SESSION, shell="main").stdout, "1\n")
        # Streamed, in the session's shell: the first line comes on its own.
        with self.c.execute_stream("echo $A; sleep 1; pwd", pool="shell", session=SESSION,
                                   shell="main") as events:
            self.assertTrue(events.streamed)
            self.assertEqual(next(events), OutputEvent("stdout", "1\n"))
            self.assertEqual(events.result().stdout, "1\n/tmp\n")
        streamed = self.c.execute_stream("echo ${A:-unset}", pool="shell", session=SESSION)
        self.assertTrue(streamed.streamed)
        self.assertEqual(streamed.result().stdout, "unset\n")


if __name__ == "__main__":
    unittest.main()
