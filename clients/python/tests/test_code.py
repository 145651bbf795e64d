"""Python ``code`` through the package, run by the pool's warm interpreter (the server's
``python`` pool has ``interpreters.python`` with json preloaded): each run is a fresh
process with ``python3 -c``'s results (stdout, exit codes, tracebacks, stdin, timeouts),
whole or streamed, one-shot or on a lease, in the foreground or as a background process.
A pool without an interpreter refuses code; a call that gives both or neither of command
and code fails before any request."""

from __future__ import annotations

import unittest

from support import client, require_server

from warmpool import BadRequest, Client, ExitEvent, OutputEvent

POOL = "python"


def setUpModule() -> None:
    require_server()


class CodeTest(unittest.TestCase):
    c: Client

    @classmethod
    def setUpClass(cls) -> None:
        cls.c = client()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.c.close()

    def test_code_runs_as_python3_c_would(self) -> None:
        r = self.c.execute(code="print(6 * 7)", pool=POOL)
        self.assertEqual((r.stdout, r.stderr, r.exit_code, r.pool), ("42\n", "", 0, POOL))
        # The preloaded module is there, and the code is __main__ as under python3 -c.
        r = self.c.execute(code="import sys; print(__name__, sys.argv, 'json' in sys.modules)",
                           pool=POOL)
        self.assertEqual(r.stdout, "__main__ ['-c'] True\n")

    def test_exit_codes_and_tracebacks_are_python3_cs(self) -> None:
        self.assertEqual(self.c.execute(code="import sys; sys.exit(3)", pool=POOL).exit_code, 3)
        r = self.c.execute(code="x = 1\ny = x / 0", pool=POOL)
        self.assertEqual(r.exit_code, 1)
        self.assertTrue(r.stderr.startswith("Traceback (most recent call last):\n"), r.stderr)
        self.assertIn('File "<string>", line 2, in <module>', r.stderr)
        self.assertTrue(r.stderr.endswith("ZeroDivisionError: division by zero\n"), r.stderr)
        r = self.c.execute(code="raise SystemExit('bye')", pool=POOL)
        self.assertEqual((r.exit_code, r.stderr), (1, "bye\n"))

    def test_each_run_is_a_fresh_process(self) -> None:
        probe = "import os; print(os.getpid(), globals().get('leak'))\nleak = 'set'"
        with self.c.lease(POOL, timeout="20s") as lease:
            first = lease.exec(code=probe).stdout.split()
            second = lease.exec(code=probe).stdout.split()
        self.assertEqual((first[1], second[1]), ("None", "None"))
        self.assertNotEqual(first[0], second[0])

    def test_stdin_env_and_cwd_reach_the_code(self) -> None:
        r = self.c.execute(code="import os, sys; print(sys.stdin.read().upper(), "
                                "os.environ['GREETING'], os.getcwd())",
                           stdin="abc", env={"GREETING": "hi"}, cwd="/tmp", pool=POOL)
        self.assertEqual(r.stdout, "ABC hi /tmp\n")

    def test_a_timeout_kills_the_run_and_the_next_one_works(self) -> None:
        r = self.c.execute(code="print('started', flush=True)\nwhile True: pass", timeout="500ms",
                           raise_on_timeout=False, pool=POOL)
        self.assertTrue(r.timed_out)
        self.assertEqual(r.stdout, "started\n")
        self.assertEqual(self.c.execute(code="print('next')", pool=POOL).stdout, "next\n")

    def test_streamed_code_comes_in_order_and_ends_with_its_exit(self) -> None:
        code = "import sys\nfor i in range(3): print(i, flush=True)\nsys.exit(2)"
        with self.c.execute_stream(code=code, pool=POOL) as events:
            seen = list(events)
        out = "".join(e.data for e in seen if isinstance(e, OutputEvent) and e.stream == "stdout")
        self.assertEqual(out, "0\n1\n2\n")
        self.assertIsInstance(seen[-1], ExitEvent)
        self.assertEqual(events.exit.exit_code if events.exit else None, 2)
        with self.c.lease(POOL, timeout="20s") as lease:
            with lease.exec_stream(code="print('on a lease')") as events:
                self.assertEqual(events.result().stdout, "on a lease\n")

    def test_a_background_process_runs_code_too(self) -> None:
        with self.c.lease(POOL, timeout="20s") as lease:
            with lease.start_process(code="import sys\nprint(sys.stdin.readline().strip()[::-1])",
                                     stdin="olleh\n") as proc:
                self.assertEqual(proc.command, "python")
                r = proc.wait(timeout=20)
        self.assertEqual((r.stdout, r.exit_code), ("hello\n", 0))

    def test_a_pool_without_an_interpreter_refuses_code(self) -> None:
        with self.assertRaises(BadRequest) as cm:
            self.c.execute(code="print(1)", pool="single")
        self.assertIn("interpreters.python", cm.exception.message)

    def test_command_and_code_are_one_or_the_other(self) -> None:
        with self.assertRaises(ValueError):
            self.c.execute(["true"], code="print(1)", pool=POOL)
        with self.assertRaises(TypeError):
            self.c.execute(pool=POOL)
        with self.assertRaises(ValueError):
            self.c.execute(["true"], language="python", pool=POOL)
        with self.assertRaises(TypeError):
            self.c.execute(code=b"print(1)", pool=POOL)  # type: ignore[arg-type]


if __name__ == "__main__":
    unittest.main()
