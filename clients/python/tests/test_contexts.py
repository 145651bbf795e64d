"""Stateful Python code contexts through the package: globals persist between runs, the
last expression's repr is ``result``, an exception is a structured ``error``, a timeout
interrupts a loop and the context stays usable, a context that died raises ShellExited
(409), an unknown one NotFound (404), release ends them."""

from __future__ import annotations

import unittest

from support import client, require_server

from warmpool import Client, CodeResult, Lease, NotFound, ShellExited


def setUpModule() -> None:
    require_server()


class ContextTest(unittest.TestCase):
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

    def test_globals_persist_and_the_result_is_the_last_expressions_repr(self) -> None:
        with self.lease.context() as ctx:
            self.assertIsNone(ctx.run("x = 0").result)
            ctx.run("x += 1")
            ctx.run("x += 1")
            r = ctx.run("x")
            self.assertIsInstance(r, CodeResult)
            self.assertEqual(r.result, "2")
            self.assertTrue(r.ok)
            p = ctx.run("print(3)")
            self.assertEqual((p.stdout, p.result), ("3\n", None))
        self.assertTrue(ctx.closed)

    def test_an_exception_is_a_structured_error_and_the_context_survives(self) -> None:
        with self.lease.context("errs") as ctx:
            self.assertEqual(ctx.id, "errs")
            ctx.run("kept = 'k'")
            r = ctx.run("a = 1\nb = a / 0")
            assert r.error is not None
            self.assertEqual(r.error.name, "ZeroDivisionError")
            self.assertEqual(r.error.value, "division by zero")
            self.assertIn("b = a / 0", r.error.traceback)
            self.assertFalse(r.ok)
            self.assertEqual(ctx.run("kept").result, "'k'")

    def test_a_timeout_interrupts_a_loop_and_the_context_stays_usable(self) -> None:
        with self.lease.context() as ctx:
            ctx.run("n = 41")
            r = ctx.run("while True: pass", timeout=0.3)
            self.assertTrue(r.timed_out)
            assert r.error is not None
            self.assertEqual(r.error.name, "KeyboardInterrupt")
            self.assertEqual(ctx.run("n + 1").result, "42")

    def test_a_dead_context_raises_shell_exited_and_an_unknown_one_not_found(self) -> None:
        with self.lease.context() as ctx:
            r = ctx.run("import os\nos._exit(2)")
            assert r.error is not None
            self.assertEqual(r.error.name, "ContextExited")
            with self.assertRaises(ShellExited) as cm:
                ctx.run("1")
            self.assertEqual((cm.exception.status, cm.exception.code), (409, "shell_exited"))
        self.lease.open_context("gone").close()
        with self.assertRaises(NotFound) as nf:
            self.lease.attach_context("gone").run("1")
        self.assertEqual(nf.exception.status, 404)

    def test_the_lease_lists_its_contexts_and_whether_each_lives(self) -> None:
        a = self.lease.open_context("listed-a")
        b = self.lease.open_context("listed-b")
        try:
            mine = [c for c in self.lease.contexts() if c.id.startswith("listed-")]
            self.assertEqual([(c.id, c.running, c.busy) for c in mine],
                             [("listed-a", True, False), ("listed-b", True, False)])
            self.assertTrue(all(c.pid > 0 for c in mine))
            b.run("import os\nos._exit(0)")
            mine = [c for c in self.lease.contexts() if c.id.startswith("listed-")]
            self.assertEqual([(c.id, c.running) for c in mine], [("listed-a", True), ("listed-b", False)])
        finally:
            a.close()
            b.close()
        self.assertEqual([c for c in self.lease.contexts() if c.id.startswith("listed-")], [])

    def test_release_ends_every_context(self) -> None:
        # `single` has one sandbox: the second lease gets the first one's, reset.
        with self.c.lease("single", timeout="60s") as lease:
            ctx = lease.context("kept")
            ctx.run("secret = 1")
        with self.c.lease("single", timeout="60s") as lease:
            with self.assertRaises(NotFound):
                lease.attach_context("kept").run("secret")


if __name__ == "__main__":
    unittest.main()
