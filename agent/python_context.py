# The driver of a stateful Python code context (agent/contexts.hpp), embedded into the agent
# and run with `python3 -c` (no file of it exists in the sandbox for a tenant to change).
#
# fd 3: the agent's requests, each `<decimal length>\n<utf-8 code>`.
# fd 4: one JSON line per event: {"ready": ...} once the preload modules are imported, then
#       per run {"started": seq} as it begins and {"seq", "result", "error"} after it, written after stdout and stderr were
#       flushed, so the agent, reading the status, finds the run's output already in its pipes.
# stdout/stderr are the run's; stdin is /dev/null (a read gets EOF). Only modules of
# python3-minimal (Debian's smallest Python, no json) are used.
#
# A run's code shares one namespace with the runs before it (a module named __main__, so
# pickle finds classes defined in it). The last statement, when it is an expression, is
# evaluated apart and its repr() is the run's result, as in Jupyter. SIGINT raises
# KeyboardInterrupt only while a run executes: an interrupt that arrives just after it ended
# must not kill the driver. SystemExit is reported as an error; the context lives on.
import sys
import os


def _main(preload):
    import ast
    import builtins
    import linecache
    import signal
    import traceback
    import types

    for name in preload:
        __import__(name)
    ctl = os.fdopen(3, "rb", buffering=0)
    status_fd = 4
    sys.argv = [""]  # as an interactive interpreter has it, not the driver's arguments
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    ns = main.__dict__
    # The agent interrupts a run only after it read the run's {"started"} line. started: that
    # line is (being) written; an interrupt now is held in pending and raised as the code
    # starts. running: the tenant's code executes, an interrupt raises in it. Neither: the
    # agent sent it just before it read the run's answer; it is dropped.
    state = {"running": False, "started": False, "pending": False}
    # A repr, an exception's str() and a traceback longer than these are cut: they travel
    # in one status line and one agent frame (at most 6 MiB of UTF-8 together).
    result_cap = 1 << 20
    error_cap = 1 << 18

    def cut(text, cap):
        return text if len(text) <= cap else text[:cap] + "... [%d characters cut]" % (len(text) - cap)

    def on_sigint(signum, frame):
        if state["running"]:
            raise KeyboardInterrupt
        if state["started"]:
            state["pending"] = True
    signal.signal(signal.SIGINT, on_sigint)

    # JSON by hand: python3-minimal (Debian's smallest Python) has no json module. Only
    # what the answers hold: dicts of str, int, bool and None.
    escapes = {i: "\\u%04x" % i for i in range(32)}
    escapes[ord('"')] = '\\"'
    escapes[ord("\\")] = "\\\\"

    def enc(v):
        if v is None:
            return "null"
        if v is True or v is False:
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, dict):
            return "{" + ",".join(enc(str(k)) + ":" + enc(x) for k, x in v.items()) + "}"
        return '"' + str(v).translate(escapes) + '"'

    def emit(obj):
        # UTF-8 with lone surrogates (a repr of undecodable bytes) replaced: a line the
        # agent cannot parse would leave the run hanging until its timeout.
        data = (enc(obj) + "\n").encode("utf-8", "replace")
        while data:
            n = os.write(status_fd, data)
            data = data[n:]

    def read_exact(n):
        buf = b""
        while len(buf) < n:
            chunk = ctl.read(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def read_request():
        line = b""
        while not line.endswith(b"\n"):
            c = ctl.read(1)
            if not c:
                raise EOFError
            line += c
        return read_exact(int(line))

    def structured(exc, filename):
        # The frames of the tenant's code only: the driver's own are noise to them.
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != filename:
            tb = tb.tb_next
        if isinstance(exc, SyntaxError):
            lines = traceback.format_exception_only(type(exc), exc)
        else:
            lines = traceback.format_exception(type(exc), exc, tb)
        try:
            value = str(exc)
        except BaseException:
            value = "<unprintable %s>" % type(exc).__name__
        return {"name": type(exc).__name__, "value": cut(value, error_cap),
                "traceback": cut("".join(lines), error_cap)}

    def run(code, filename):
        # The source goes into linecache so that tracebacks show the lines of the run.
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        tree = ast.parse(code, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, filename, "exec"), ns)
        if last is not None:
            value = eval(compile(last, filename, "eval"), ns)
            if value is not None:
                return cut(repr(value), result_cap)
        return None

    emit({"ready": True, "version": sys.version.split()[0], "pid": os.getpid()})
    seq = 0
    while True:
        try:
            code = read_request().decode("utf-8", "replace")
        except (EOFError, ValueError):
            os._exit(0)  # the agent closed the context
        seq += 1
        filename = "<context-run-%d>" % seq
        answer = {"seq": seq, "result": None, "error": None}
        state["started"] = True
        emit({"started": seq})
        try:
            state["running"] = True
            try:
                if state["pending"]:
                    raise KeyboardInterrupt
                answer["result"] = run(code, filename)
            finally:
                state["running"] = False
                state["started"] = state["pending"] = False
        except BaseException as exc:  # SystemExit and KeyboardInterrupt included
            answer["error"] = structured(exc, filename)
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except BaseException:
                pass
        emit(answer)


_main(sys.argv[1:])
