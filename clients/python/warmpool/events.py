"""Streamed output: a command's stdout and stderr as they are produced, then its exit.

``warmpool serve`` streams when asked (``Accept: application/x-ndjson``): one JSON object a
line, ``{"type": "stdout" | "stderr", "data": ...}`` as output comes and a last
``{"type": "exit", "exit_code", "signal", "duration_ms", "timed_out", "truncated"}``, or
``{"type": "error", "error": {...}}`` when the sandbox failed mid-stream. An
:class:`ExecStream` iterates over them as :class:`OutputEvent` and :class:`ExitEvent`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Dict, Iterator, List, Optional, Type, Union

from ._http import StreamAnswer
from .errors import Unreachable, WarmpoolError, error_class, status_of
from .types import ExecResult, _float, _int

__all__ = ["OutputEvent", "ExitEvent", "Event", "ExecStream"]


@dataclass(frozen=True)
class OutputEvent:
    """A piece of output, in the order the command wrote it to that stream.

    Attributes:
        stream: ``"stdout"`` or ``"stderr"`` (a PTY process has one stream: stdout).
        data: the text (invalid UTF-8 replaced by U+FFFD). Pieces are cut where the bytes
            came, not at line ends.
    """

    stream: str
    data: str


@dataclass(frozen=True)
class ExitEvent:
    """The last event: how the command ended (the fields of an :class:`ExecResult` without
    the output, which came in the :class:`OutputEvent` s before it)."""

    exit_code: int = -1
    signal: int = 0
    duration_ms: float = 0.0
    timed_out: bool = False
    truncated: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Exited with 0, not killed, not timed out."""
        return self.exit_code == 0 and self.signal == 0 and not self.timed_out

    @classmethod
    def from_json(cls, w: Dict[str, Any]) -> "ExitEvent":
        return cls(
            exit_code=_int(w, "exit_code", -1),
            signal=_int(w, "signal"),
            duration_ms=_float(w, "duration_ms"),
            timed_out=w.get("timed_out") is True,
            truncated=w.get("truncated") is True,
            raw=dict(w),
        )


Event = Union[OutputEvent, ExitEvent]
"""What an :class:`ExecStream` yields."""


class ExecStream(Iterator[Event]):
    """The events of one streamed command, in order: :class:`OutputEvent` s, then one
    :class:`ExitEvent`, after which the iteration stops.

    Use it in a ``with`` block or call :meth:`close` when stopping early: closing drops the
    connection, and the server then stops a command it streamed to this client alone (an
    exec, a shell command), while a followed background process goes on. An error the
    sandbox reports mid-stream is raised from the iteration as its typed
    :class:`~warmpool.WarmpoolError`; a connection that ends before the exit raises
    :class:`~warmpool.Unreachable`.

    The output seen is also kept, so :meth:`result` can return the whole
    :class:`~warmpool.ExecResult` once the command ended.
    """

    def __init__(self, answer: StreamAnswer) -> None:
        self._answer = answer
        self._pending: List[Event] = []
        self._stdout: List[str] = []
        self._stderr: List[str] = []
        self.exit: Optional[ExitEvent] = None
        """The :class:`ExitEvent` once it arrived, else None."""
        self.streamed = answer.content_type == "application/x-ndjson"
        """Whether the server streamed the answer (False: it answered the whole result at
        once, turned into the same events)."""
        if not self.streamed:
            # A server that answered the whole result at once (not streamed): same events.
            self._pending = _events_of_result(answer.read_all(), answer.where)

    @property
    def closed(self) -> bool:
        """The connection is closed (the stream ended, or :meth:`close` was called)."""
        return self._answer.closed

    def __iter__(self) -> "ExecStream":
        return self

    def __next__(self) -> Event:
        event = self._next()
        if event is None:
            raise StopIteration
        if isinstance(event, OutputEvent):
            (self._stdout if event.stream == "stdout" else self._stderr).append(event.data)
        else:
            self.exit = event
            self.close()
        return event

    def _next(self) -> Optional[Event]:
        if self._pending:
            return self._pending.pop(0)
        if self.exit is not None or self._answer.closed:
            return None
        while True:
            line = self._answer.readline()
            if not line:
                self.close()
                raise Unreachable(0, "unreachable", f"{self._answer.where}: the stream ended "
                                  "before the command's exit")
            if not line.strip():
                continue
            event = _event(line, self._answer.where)
            if event is not None:
                return event

    def result(self) -> ExecResult:
        """Reads the rest of the stream and returns the command's whole result: the output
        of every event (those already iterated included) and the exit's fields."""
        for _ in self:
            pass
        if self.exit is None:
            raise Unreachable(0, "unreachable", f"{self._answer.where}: the stream was closed "
                              "before the command's exit")
        w = dict(self.exit.raw)
        w.pop("type", None)
        w["stdout"] = "".join(self._stdout)
        w["stderr"] = "".join(self._stderr)
        return ExecResult.from_json(w)

    def close(self) -> None:
        """Drops the connection (idempotent)."""
        self._answer.close()

    def __enter__(self) -> "ExecStream":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 (nothing to do at collection time)
            pass


def _event(line: bytes, where: str) -> Optional[Event]:
    try:
        w = json.loads(line)
    except ValueError as e:
        raise WarmpoolError(200, "http_error", f"{where}: a stream line is not JSON: {line[:200]!r}") from e
    if not isinstance(w, dict):
        raise WarmpoolError(200, "http_error", f"{where}: a stream line is not a JSON object")
    kind = w.get("type")
    if kind in ("stdout", "stderr"):
        data = w.get("data")
        return OutputEvent(str(kind), data if isinstance(data, str) else "")
    if kind == "exit":
        return ExitEvent.from_json(w)
    if kind == "error":
        err = w.get("error")
        err = err if isinstance(err, dict) else {}
        code = err.get("code") if isinstance(err.get("code"), str) else "internal"
        message = err.get("message") if isinstance(err.get("message"), str) else ""
        status = status_of(str(code))
        raise error_class(str(code), status)(status, str(code), str(message), body=w)
    return None  # a kind this version does not know: skipped


def _events_of_result(body: bytes, where: str) -> List[Event]:
    try:
        w = json.loads(body) if body else {}
    except ValueError as e:
        raise WarmpoolError(200, "http_error", f"{where}: the answer is not JSON") from e
    if not isinstance(w, dict):
        raise WarmpoolError(200, "http_error", f"{where}: expected a JSON object in the answer")
    events: List[Event] = []
    for stream in ("stdout", "stderr"):
        data = w.get(stream)
        if isinstance(data, str) and data:
            events.append(OutputEvent(stream, data))
    events.append(ExitEvent.from_json(w))
    return events
