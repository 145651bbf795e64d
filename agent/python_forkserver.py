# warmpool's Python fork server (issue 16). Embedded into warmpool-agent at build time and
# started by it, as the sandbox's tenant uid, with
#     <interpreters.python.command> -I -c <this program> <control fd> <module>...
# It imports the listed modules once and then only forks: every run is a child that gets
# fresh process state and runs the code as `python3 -c` would. The server itself never
# compiles or executes tenant code, so it may serve the next tenant after a reset.
#
# A fork can cost tens of milliseconds (page tables of a large interpreter, a slow
# hypervisor), so one child is forked ahead: the standby waits, still holding nothing but the
# server's state, and takes the next run. The agent holds a socket to it and sends the run
# there itself; the run reports its exit status on that socket just before it exits. Neither
# waking the server nor the kernel's tear-down of the exited child (milliseconds for a large
# interpreter) is on a run's path. Once its standby ended, the server forks the next one.
# Reset keeps the standby only if no tenant process changed it (the agent compares it with
# the server as it started, and kills it otherwise); the ping that follows forks a fresh one
# when it is gone.
#
# With --prefault (before the module names), the standby copies the server's memory into its
# own while it waits, so that a run's first writes no longer fault page by page; it stops as
# soon as a run arrives. The next standby is forked once the agent has been quiet for a few
# milliseconds: forking competes for the CPU with passing a run's end on.
#
# Frames are a 4-byte big-endian length and JSON; descriptors ride as SCM_RIGHTS.
# Control socket, fd argv[1], to the agent:
#   agent -> server  {"op": "run", "code": base64, "env": {...}, "cwd": path, "taken": [...]}
#                    with four fds: stdin, stdout, stderr of the run and a socket it reports
#                    its end on; the server forks a child for it (when there is no standby)
#                    {"op": "ping", "taken": [...]}, {"op": "standby", "taken": [...]}
#                    "taken": standbys the agent gave a run or passed over since its last
#                    message; they are no longer the server's standby
#   server -> agent  {"forked": pid} with one fd, a socket to a new standby
#                    {"ready": true, "pid", "version"} once the modules are imported, or
#                    {"ready": false, "error": text}
#                    {"pid": child} once a child has the run, {"error": text} when none could
#                    {"exit": child, "status": raw wait status} for every child reaped
#                    {"pong": true, "standby": pid or 0}, {"standby": pid or 0}
# A standby's socket:
#   agent -> standby {"code": base64, "env": {...}, "cwd": path} with three fds
#   run -> agent     {"status": raw wait status} once its stdio is closed, just before _exit
import os
import sys

# Before anything else: a tenant's process runs as our uid, so it could otherwise write our
# memory through /proc/<pid>/mem or ptrace us. Not dumpable, we are the kernel's to protect.
try:
    import ctypes
except ImportError:
    sys.stderr.write("this Python has no ctypes module, which the fork server needs to keep the "
                     "tenant's processes out of its memory: use a Python with its full standard "
                     "library (on Debian, the python3 package rather than python3-minimal)\n")
    sys.exit(3)
_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
if _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
    sys.stderr.write("warmpool fork server: prctl(PR_SET_DUMPABLE) failed\n")
    sys.exit(3)

import atexit
import binascii
import errno
import gc
import json
import re
import select
import signal
import socket
import time
import types

_ctl = socket.socket(fileno=int(sys.argv[1]))
_options = [a for a in sys.argv[2:] if a.startswith("--")]
_modules = [a for a in sys.argv[2:] if not a.startswith("--")]
_prefault = "--prefault" in _options
# After a run's end, the next standby waits until the agent sent nothing for this long.
_QUIET = 0.005
_rbuf = bytearray()
_fds = []
_server_pid = os.getpid()
# SIGCHLD wakes the main loop through this pipe (a Python handler alone would not end select).
_wake_r, _wake_w = os.pipe()
os.set_blocking(_wake_r, False)
os.set_blocking(_wake_w, False)

# Signals a tenant's process may send us (same uid): ignored, so that only SIGKILL and
# SIGSTOP (which the agent notices) can disturb the server. Children get the originals back.
_SIGNALS = [getattr(signal, n) for n in (
    "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM",
    "SIGPROF", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGXCPU", "SIGXFSZ", "SIGPIPE", "SIGIO",
    "SIGURG", "SIGWINCH", "SIGTRAP", "SIGSYS") if hasattr(signal, n)]
_orig_handlers = {s: signal.getsignal(s) for s in _SIGNALS}
for _s in _SIGNALS:
    try:
        signal.signal(_s, signal.SIG_IGN)
    except (OSError, ValueError):
        pass
# The interpreter's own stdio objects: the child re-points fds 0-2 under them.
_std = (sys.stdin, sys.stdout, sys.stderr)

# The interpreter's recursion depth as its counter has it, which shows in the error of a limit
# set too low: here, in `python3 -c`'s own frame, and (the probe) where a run's code runs.
_DEPTH_PROBE = compile("""
import re as _re, sys as _sys
try:
    _sys.setrecursionlimit(1)
except RecursionError as _e:
    _m = _re.search(r"recursion depth (\\d+)", str(_e))
    depth = int(_m.group(1)) if _m else 0
""", "<depth>", "exec")
_BASE_DEPTH = 0
try:
    sys.setrecursionlimit(1)
except RecursionError as _e:
    _m = re.search(r"recursion depth (\d+)", str(_e))
    _BASE_DEPTH = int(_m.group(1)) if _m else 0


def _send(obj, fd=None):
    data = json.dumps(obj).encode()
    frame = len(data).to_bytes(4, "big") + data
    sent = 0
    if fd is not None:
        sent = _ctl.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                       fd.to_bytes(4, sys.byteorder))])
    _ctl.sendall(frame[sent:])


def _recvmsg(sock, fds):
    """One read of sock: its bytes (b"" at the end); descriptors that came with them are
    appended to fds."""
    data, anc, _flags, _addr = sock.recvmsg(1 << 16, socket.CMSG_SPACE(16 * 4))
    for level, kind, blob in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            for i in range(0, len(blob) - len(blob) % 4, 4):
                fds.append(int.from_bytes(blob[i:i + 4], sys.byteorder))
    return data


def _frame_buffered():
    return len(_rbuf) >= 4 and len(_rbuf) >= 4 + int.from_bytes(_rbuf[:4], "big")


def _recv():
    """One frame as a dict; None at the end of the stream."""
    while True:
        if _frame_buffered():
            n = int.from_bytes(_rbuf[:4], "big")
            payload = bytes(_rbuf[4:4 + n])
            del _rbuf[:4 + n]
            return json.loads(payload)
        data = _recvmsg(_ctl, _fds)
        if not data:
            return None
        _rbuf.extend(data)


_standby = None  # pid of the standby, None when there is none
_running = set()  # children forked for a run that are not reaped yet
_reaped = {}  # pid -> wait status of children reaped and not yet reported


def _reap(_sig=None, _frame=None):
    """Reaps every child that ended, keeping its status for the agent. Also the SIGCHLD
    handler: a child killed by a reset must not stay a zombie, which the agent would count as
    a survivor."""
    global _standby
    try:
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid <= 0:
                break
            if pid == _standby:
                _standby = None
            _running.discard(pid)
            _reaped[pid] = status
    except ChildProcessError:
        pass


signal.signal(signal.SIGCHLD, _reap)
signal.set_wakeup_fd(_wake_w, warn_on_full_buffer=False)


def _restore_signals():
    """The dispositions the interpreter started with, for the code of a run."""
    for s, h in _orig_handlers.items():
        try:
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


_MADV_POPULATE_WRITE = 23  # Linux 5.14
_PAGE = os.sysconf("SC_PAGE_SIZE")
_CHUNK = 256  # pages per step: a run that arrives waits for one step at most
# The copy may take at most this share of the sandbox's memory limit: a server that large
# relative to the limit leaves its standby as it is rather than crowd out the tenant's runs.
_COPY_SHARE = 4
_memory_limit = next((int(a.split("=", 1)[1]) for a in _options
                      if a.startswith("--memory-limit=")), 0)


class _RunArrived(Exception):
    pass


def _writable_runs(sock):
    """(start, length) of each run of pages the server has (resident, per mincore) in our
    private writable mappings: what a write would copy. Reserved but untouched memory is not
    in it. (/proc/self/pagemap would say the same but is closed to a non-dumpable process.)
    Raises _RunArrived as soon as sock has something to read."""
    mincore = _libc.mincore
    mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    vec = (ctypes.c_ubyte * _CHUNK)()
    try:
        with open("/proc/self/maps") as f:
            maps = f.read().splitlines()
    except OSError:
        return
    for line in maps:
        parts = line.split()
        if len(parts) < 2 or parts[1] != "rw-p" or (len(parts) > 5 and parts[5].startswith("[v")):
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        for chunk in range(lo, hi, _CHUNK * _PAGE):
            if select.select([sock], [], [], 0)[0]:
                raise _RunArrived()
            end = min(hi, chunk + _CHUNK * _PAGE)
            if mincore(chunk, end - chunk, vec) != 0:
                break  # unmapped since we read the maps
            run = None
            for i in range((end - chunk) // _PAGE):
                addr = chunk + i * _PAGE
                if vec[i] & 1 and run is None:
                    run = addr
                elif not vec[i] & 1 and run is not None:
                    yield run, addr - run
                    run = None
            if run is not None:
                yield run, end - run


def _populate(sock):
    """In the standby: writes (without changing) every page of the server's memory that it
    shares, so each is copied now rather than on a run's first write. Stops when a run
    arrives on sock, or at the first error (an older kernel); skipped when the copy would
    take more than 1/_COPY_SHARE of the sandbox's memory limit."""
    madvise = _libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    try:
        runs = list(_writable_runs(sock))
    except _RunArrived:
        return
    if _memory_limit and sum(n for _, n in runs) * _COPY_SHARE > _memory_limit:
        return
    for start, length in runs:
        for at in range(start, start + length, _CHUNK * _PAGE):
            if select.select([sock], [], [], 0)[0]:
                return  # a run is waiting
            n = min(_CHUNK * _PAGE, start + length - at)
            if madvise(at, n, _MADV_POPULATE_WRITE) != 0:
                if ctypes.get_errno() == errno.EINVAL:
                    return  # a kernel without MADV_POPULATE_WRITE
                break  # this mapping changed under us: on to the next


def _warm_up():
    """A standby's first writes to the memory it shares with the server each copy a page, and
    on a virtual machine a page fault can cost 10 us or more. Doing what every run does before
    the run arrives (compile and exec, JSON, a collection) takes those copies off its path."""
    main = {"__builtins__": __builtins__, "__name__": "__main__"}
    exec(compile("x = [str(i) for i in range(64)]\n", "<string>", "exec"), main)
    json.loads(json.dumps({"op": "run", "code": "", "env": dict(os.environ), "cwd": "/"}))
    binascii.a2b_base64("cHJpbnQoNio3KQ==")
    types.ModuleType("__main__")
    if "random" in sys.modules:
        sys.modules["random"].random()
    gc.collect()


def _await_run(sock):
    """In the standby: wait for one run (its frame and three fds), then become it, keeping
    sock to report the run's end on. Signals get their usual dispositions now (a tenant that
    kills or stops a standby only makes the agent pass it over); dumpability waits for the
    run. It dies with the server."""
    global _standby_env
    signal.set_wakeup_fd(-1)
    os.close(_wake_r)
    os.close(_wake_w)
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != _server_pid:
        os._exit(0)  # it died before the line above
    _restore_signals()
    _become_run(sock.detach())
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=_report[0])
    _standby_env = dict(os.environ)
    _warm_up()
    _reseed()
    if _prefault:
        _populate(sock)
    buf, fds = bytearray(), []
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
        data = _recvmsg(sock, fds)
        if not data:
            os._exit(0)  # the agent let us go
        buf.extend(data)
    sock.detach()  # _report holds its descriptor
    if len(fds) != 3:
        os._exit(126)
    _child(json.loads(bytes(buf[4:])), fds, standby=True)


def _fork(then):
    """Forks a child that runs then() and never returns. Its pid, or raises OSError."""
    pid = os.fork()
    if pid == 0:
        try:
            then()  # ends with os._exit
        except BaseException as e:  # a failure of ours before the code ran
            try:
                os.write(2, ("warmpool fork server: %r\n" % (e,)).encode())
            finally:
                os._exit(126)
        os._exit(126)
    return pid


def _fork_standby():
    """Forks a standby unless there is one, and hands the agent a socket to it."""
    global _standby
    _reap()
    if _standby is not None:
        return
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def wait_in_standby():
        _ctl.close()
        ours.close()
        _await_run(theirs)
    try:
        pid = _fork(wait_in_standby)
    except OSError:
        ours.close()
        theirs.close()
        return  # the next run forks its own child
    theirs.close()
    if pid not in _reaped:  # (else killed as soon as it was born)
        _standby = pid
        _send({"forked": pid}, ours.fileno())
    ours.close()
    # The fork shared our memory too: take the page copies of the next messages now.
    json.loads(json.dumps({"op": "run", "code": "", "env": {}, "cwd": "/"}))


def _reseed():
    """Whatever a fork shares: random state. (random reseeds itself at fork too.) A standby
    does this before its run arrives: it is used for one run only. Reseeding numpy in a fresh
    fork costs milliseconds of page copies."""
    if "random" in sys.modules:
        sys.modules["random"].seed()
    np = sys.modules.get("numpy")
    if np is not None and hasattr(np, "random"):
        try:
            np.random.seed()
        except Exception:
            pass


_report = None  # in a run: (fd, its st_dev and st_ino, our pid) to report the end on
_standby_env = None  # in a standby: its environment, as a plain dict


def _become_run(report):
    """What every run needs whatever its code, and a standby does before its run arrives: its
    own session and process group (a timeout kills every descendant), the socket `report` (an
    fd) to report the end on out of the way of the code's own descriptors (close-on-exec), and
    none of the server's descriptors (its control socket least of all) besides stdio."""
    global _report
    os.setsid()
    high = min(1023, os.sysconf("SC_OPEN_MAX") - 1)
    os.dup2(report, high, inheritable=False)
    if report != high:
        os.close(report)
    st = os.fstat(high)
    _report = (high, st.st_dev, st.st_ino, os.getpid())
    os.closerange(3, high)
    os.closerange(high + 1, 1 << 16)


def _child(msg, fds, standby=False, report=None):
    """In the forked child: become a fresh `python3 -c` process and run the code, with fds as
    its stdin, stdout and stderr. A standby has done _become_run already; a child forked for
    the run does it here, with `report` (an fd)."""
    code = binascii.a2b_base64(msg.get("code", ""))
    _libc.prctl(_PR_SET_PDEATHSIG, 0, 0, 0, 0)
    _libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    _ctl.close()  # (a no-op in a standby, which closed it at its fork)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    if not standby:
        _become_run(report)
        signal.set_wakeup_fd(-1)
        _restore_signals()
    env = msg.get("env") or {}
    if not standby or env != _standby_env:  # (usually the server's own: nothing to change)
        for k in [k for k in os.environ if k not in env]:
            del os.environ[k]
        for k, v in env.items():
            if os.environ.get(k) != v:
                os.environ[k] = v
    cwd = msg.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        os.write(2, ("warmpool-agent: chdir %s: %s\n" % (cwd, e.strerror)).encode())
        os._exit(126)
    # What `python3 -c` sets up: argv, the current directory first on the path, then
    # PYTHONPATH; a fresh __main__.
    sys.argv = ["-c"]
    path = [""]
    if env.get("PYTHONPATH"):
        path += [p for p in env["PYTHONPATH"].split(os.pathsep) if p]
    sys.path[0:0] = path
    if env.get("PYTHONDONTWRITEBYTECODE"):
        sys.dont_write_bytecode = True
    stdin, stdout, stderr = _std
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = stdin, stdout, stderr
    if env.get("PYTHONUNBUFFERED"):
        stdout.reconfigure(write_through=True)
        stderr.reconfigure(write_through=True)
    if env.get("PYTHONIOENCODING"):
        enc, _, errors = env["PYTHONIOENCODING"].partition(":")
        for f in (stdin, stdout):
            f.reconfigure(**({"encoding": enc} if enc else {}), **({"errors": errors} if errors else {}))
    if not standby:
        _reseed()
    main = types.ModuleType("__main__")
    main.__dict__.update({"__builtins__": __builtins__, "__loader__": __loader__,
                          "__spec__": None, "__package__": None, "__annotations__": {}})
    sys.modules["__main__"] = main
    # Under python3 -c the code's frame is the interpreter's first; here it starts under ours.
    # The limit grows by the difference, measured where the code will run (the interpreter's
    # counter can differ from a count of our frames), so the code recurses as deep as there.
    probe = {}
    exec(_DEPTH_PROBE, probe)
    if probe.get("depth") and _BASE_DEPTH:
        sys.setrecursionlimit(sys.getrecursionlimit() + probe["depth"] - _BASE_DEPTH)
    status, sigint = 0, False
    try:
        exec(compile(code, "<string>", "exec"), main.__dict__)
    except SystemExit as e:
        status = _exit_status(e)
    except BaseException as e:
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None  # not this frame
        e.__traceback__ = tb
        sys.excepthook(type(e), e, tb)
        status, sigint = 1, isinstance(e, KeyboardInterrupt)  # python3 -c dies of SIGINT then
    _finish(main, status, sigint)


def _exit_status(e):
    """What the interpreter makes of an uncaught SystemExit."""
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:
        pass
    return 1


def _finish(main, status, sigint):
    """The observable part of the interpreter's shutdown, then _exit: a full finalization of
    an interpreter that holds numpy costs far more than the run (it touches every object)."""
    threading = sys.modules.get("threading")
    if threading is not None and hasattr(threading, "_shutdown"):
        try:
            threading._shutdown()  # waits for non-daemon threads, as at exit
        except BaseException:
            pass
    atexit._run_exitfuncs()
    # Objects of the program go as they would at shutdown: files it left open are flushed
    # and closed, finalizers run.
    main.__dict__.clear()
    gc.collect()
    for f in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if f is not None:
                f.flush()
        except Exception:
            status = 120  # the interpreter's status when flushing stdio at exit fails
    if sigint:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    _report_end(status)
    os._exit(status)


def _report_end(status):
    """Tells the agent the run's exit status before the kernel tears the process down. Not
    from a process the code forked (it ends the same way), nor on a descriptor the code closed
    and reused; the agent then waits for the server to reap the run."""
    try:
        fd, dev, ino, pid = _report
        if os.getpid() != pid:
            return
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (dev, ino):
            return
        try:  # the output ends here, whatever still holds the descriptors
            null = os.open("/dev/null", os.O_RDWR)
            for target in (0, 1, 2):
                os.dup2(null, target)
        except OSError:
            for target in (0, 1, 2):
                os.close(target)
        data = b'{"status": %d}' % ((status & 0xFF) << 8)
        os.write(fd, len(data).to_bytes(4, "big") + data)
    except BaseException:
        pass


_standby_at = None  # when to fork the next standby (a time.monotonic()); None: not waiting


def _report_reaped():
    """Reports the children that ended. The next standby is due once no run is going on (a
    run could still change us, and the standby would not have the change) and the agent is
    quiet. (A standby's run is going on until it is reaped.)"""
    global _standby_at
    _reap()
    while _reaped:
        pid, status = _reaped.popitem()
        _send({"exit": pid, "status": status})
    if _standby is None and _standby_at is None and not _running:
        _standby_at = time.monotonic() + _QUIET


def _next_message():
    """The agent's next frame. Meanwhile reports reaped children and forks the standby when
    it is due."""
    global _standby_at
    while not _frame_buffered():
        _report_reaped()
        left = None if _standby_at is None else max(0.0, _standby_at - time.monotonic())
        ready = select.select([_ctl, _wake_r], [], [], left)[0]
        if _wake_r in ready:
            try:
                os.read(_wake_r, 512)
            except OSError:
                pass
        if _ctl in ready:
            data = _recvmsg(_ctl, _fds)
            if not data:
                return None
            _rbuf.extend(data)
            if _standby_at is not None:
                _standby_at = time.monotonic() + _QUIET  # the agent is busy
        elif not ready and _standby_at is not None:
            _standby_at = None
            _fork_standby()
    return _recv()


def _forget(taken):
    """The agent gave these standbys a run or passed them over."""
    global _standby
    if isinstance(taken, list) and _standby in taken:
        _standby = None


def _serve():
    global _standby_at
    while True:
        msg = _next_message()
        if msg is None:
            os._exit(0)  # the agent is gone
        _forget(msg.get("taken"))
        _report_reaped()
        op = msg.get("op")
        if op in ("ping", "standby"):
            _standby_at = None
            _fork_standby()  # now: after a reset killed the last one, or a reset asks for it
            if op == "ping":
                _send({"pong": True, "standby": _standby or 0})
            else:  # which child a reset should leave alone (and then check)
                _send({"standby": _standby or 0})
            continue
        if op != "run":
            _send({"error": "unknown op %r" % (op,)})
            continue
        fds, _fds[:] = _fds[:4], _fds[4:]
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            _send({"error": "a run needs four file descriptors"})
            continue
        try:
            pid = _fork(lambda: _child(msg, fds[:3], report=fds[3]))
        except OSError as e:
            pid = None
            _send({"error": "fork: " + (e.strerror or str(e))})
        for fd in fds:
            os.close(fd)
        if pid is not None:
            _standby_at = None  # not while the run goes on (see _report_reaped)
            if pid not in _reaped:
                _running.add(pid)
            _send({"pid": pid})


def _start():
    for name in _modules:
        try:
            __import__(name)
        except BaseException as e:
            _send({"ready": False, "error": "import %s failed: %s: %s" % (name, type(e).__name__, e)})
            os._exit(2)
    # Everything imported so far is the children's shared, read-only past: the collector of
    # a child never scans (and so never copies) it.
    gc.collect()
    gc.freeze()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 2)  # the agent reads our stderr only while we start
    os.close(devnull)
    _fork_standby()
    _send({"ready": True, "pid": os.getpid(), "version": sys.version.split()[0]})


_start()
_serve()
