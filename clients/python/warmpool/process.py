"""Background processes of a leased sandbox: started by one request, outliving it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

from ._http import Transport
from ._part import LeasePart
from ._wire import wait_s
from .errors import ExecTimeout, NotFound, StillRunning
from .events import ExecStream
from .types import Duration, ExecResult, _float, _int, _str, duration_ms, wire_duration

__all__ = ["Process", "ProcessInfo", "ProcessOutput"]

_Wire = Dict[str, Any]


def _exit_code(w: _Wire) -> Optional[int]:
    v = w.get("exit_code")
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class ProcessInfo:
    """A background process as :meth:`warmpool.Lease.processes` lists it.

    Attributes:
        id: the process id (the server's, not a Unix pid).
        command: what it runs.
        running: still running.
        exit_code: its exit status once it ended (-1 when a signal ended it), else None.
        signal: the signal that ended it, 0 otherwise.
        tty: it runs on a pseudo-terminal.
    """

    id: str
    command: str = ""
    running: bool = False
    exit_code: Optional[int] = None
    signal: int = 0
    tty: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, w: _Wire) -> "ProcessInfo":
        return cls(id=_str(w, "id"), command=_str(w, "command"), running=w.get("running") is True,
                   exit_code=_exit_code(w), signal=_int(w, "signal"), tty=w.get("tty") is True,
                   raw=dict(w))


@dataclass(frozen=True)
class ProcessOutput:
    """One read of a process's output (:meth:`Process.output`).

    Attributes:
        stdout, stderr: the output from the offsets asked for up to now (a PTY process
            writes everything to stdout).
        offset, stderr_offset: byte positions after it in each stream: pass them to the next
            read to get what follows.
        running: the process still runs.
        exit_code: once it ended, its exit status (-1 when a signal ended it), else None.
        signal, timed_out, truncated, duration_ms: once it ended, as in an
            :class:`~warmpool.ExecResult`.
    """

    stdout: str = ""
    stderr: str = ""
    offset: int = 0
    stderr_offset: int = 0
    running: bool = True
    exit_code: Optional[int] = None
    signal: int = 0
    timed_out: bool = False
    truncated: bool = False
    duration_ms: float = 0.0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, w: _Wire) -> "ProcessOutput":
        return cls(stdout=_str(w, "stdout"), stderr=_str(w, "stderr"), offset=_int(w, "offset"),
                   stderr_offset=_int(w, "stderr_offset"), running=w.get("running") is True,
                   exit_code=_exit_code(w), signal=_int(w, "signal"),
                   timed_out=w.get("timed_out") is True, truncated=w.get("truncated") is True,
                   duration_ms=_float(w, "duration_ms"), raw=dict(w))


class Process(LeasePart):
    """A process started in a lease by :meth:`warmpool.Lease.start_process`; it runs until it
    ends, is killed (:meth:`kill`), or the lease is released.

    Its output is kept by the server (the last ``output_limit`` bytes of each stream): read
    it from an offset (:meth:`output`, or :meth:`read` which remembers where it got to) or
    follow it as it comes (:meth:`follow`). ``with`` kills it on exit.
    """

    _collection = "processes"
    _kind = "process"

    def __init__(self, http: Transport, lease_id: str, process_id: str, command: str = "") -> None:
        super().__init__(http, lease_id, process_id)
        self.command = command
        self._offset = 0
        self._stderr_offset = 0

    def __repr__(self) -> str:
        return f"<warmpool.Process {self._id} lease={self._lease_id} {self.command!r}>"

    def output(self, offset: int = 0, stderr_offset: int = 0,
               wait: Optional[Duration] = None) -> ProcessOutput:
        """The output after byte ``offset`` of stdout and ``stderr_offset`` of stderr.

        Args:
            wait: when there is nothing new yet, wait up to this long (the server caps it at
                10 s) for output or the exit before answering.
        """
        query = {"offset": str(int(offset)), "stderr_offset": str(int(stderr_offset))}
        extra = 0.0
        if wait is not None:
            ms = duration_ms(wait, "wait")
            query["wait"] = str(int(ms))
            extra = ms / 1000.0
        return ProcessOutput.from_json(
            self._http.request("GET", self._path("/output"), query=query, extra_wait=extra).json())

    def read(self, wait: Optional[Duration] = None) -> ProcessOutput:
        """:meth:`output` from where the last :meth:`read` stopped (the start the first
        time): each call returns only what is new."""
        out = self.output(self._offset, self._stderr_offset, wait)
        self._offset, self._stderr_offset = out.offset, out.stderr_offset
        return out

    def follow(self, offset: int = 0, stderr_offset: int = 0, *,
               read_timeout: Optional[float] = None) -> ExecStream:
        """The output from the offsets on, as it comes, then the exit (an
        :class:`~warmpool.ExecStream`). Closing the stream stops following; the process
        goes on. ``read_timeout``: seconds to wait for the next event before raising
        :class:`~warmpool.Unreachable` (default: no limit: a server may be quiet for long)."""
        query = {"follow": "true", "offset": str(int(offset)), "stderr_offset": str(int(stderr_offset))}
        return ExecStream(self._http.stream("GET", self._path("/output"), query=query,
                                            read_timeout=read_timeout))

    def write_stdin(self, data: Union[str, bytes, bytearray, memoryview], close: bool = False) -> int:
        """Writes ``data`` (bytes as they are, a str as UTF-8) to the process's stdin and
        returns the number of bytes taken; ``close`` closes stdin after them. At most 1 MiB
        a call (:class:`~warmpool.TooLarge`); :class:`~warmpool.Conflict` once stdin was
        closed or the process ended."""
        if isinstance(data, str):
            raw = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
        else:
            raise TypeError(f"data: expected bytes or str (got {type(data).__name__})")
        answer = self._http.request("POST", self._path("/stdin"), raw=raw,
                                    query={"close": "true"} if close else None)
        n = answer.json().get("bytes")
        return int(n) if isinstance(n, int) else len(raw)

    def close_stdin(self) -> None:
        """Closes the process's stdin (it reads end of file)."""
        self.write_stdin(b"", close=True)

    def signal(self, signal: Union[str, int] = "TERM") -> None:
        """Sends a signal to the process: a name (``"TERM"``, ``"SIGINT"``) or a number."""
        self._http.request("POST", self._path("/signal"), body={"signal": signal})

    def resize(self, cols: int, rows: int) -> None:
        """Sets the window size of a PTY process (it gets SIGWINCH)."""
        self._http.request("POST", self._path("/resize"), body={"cols": cols, "rows": rows})

    def wait(self, timeout: Duration = 30.0) -> ExecResult:
        """Waits for the process to end and returns its result with its whole kept output.
        Raises :class:`~warmpool.StillRunning` (an :class:`~warmpool.ExecTimeout`) when it
        still runs after ``timeout``; nothing is killed then."""
        try:
            answer = self._http.request("POST", self._path("/wait"),
                                        body={"timeout": wire_duration(timeout)},
                                        extra_wait=wait_s(timeout))
        except StillRunning:
            raise
        except ExecTimeout as e:
            raise StillRunning(e.status, e.code, e.message, result=ExecResult(),
                               retry_after=e.retry_after, body=e.body) from None
        return ExecResult.from_json(answer.json())

    def kill(self) -> None:
        """Kills the process if it still runs and forgets it (its output and status are
        gone). A process already forgotten counts as killed."""
        try:
            self._http.request("DELETE", self._path())
        except NotFound:
            pass

    forget = kill

    def _end(self) -> None:
        self.kill()
