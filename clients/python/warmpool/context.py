"""A stateful Python code context in a leased sandbox: runs share globals, as in a notebook."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

from ._part import ClosablePart
from ._wire import wait_s
from .types import Duration, wire_duration

__all__ = ["Context", "CodeResult", "CodeError"]


@dataclass(frozen=True)
class CodeError:
    """An exception a run raised and did not catch.

    Attributes:
        name: the exception's class name (``"ZeroDivisionError"``); ``"KeyboardInterrupt"``
            when the run's timeout interrupted it, ``"SystemExit"`` for ``sys.exit()`` (the
            context lives on), ``"ContextExited"`` when the context's process ended in the
            run (``os._exit``, or a run that ignored the interrupt and was killed).
        value: ``str()`` of the exception.
        traceback: the formatted traceback of the run's own frames.
    """

    name: str = ""
    value: str = ""
    traceback: str = ""


@dataclass(frozen=True)
class CodeResult:
    """What one run did.

    Attributes:
        stdout, stderr: what it printed (invalid UTF-8 replaced by U+FFFD).
        result: ``repr()`` of the last statement's value when that statement is an
            expression (and not None), else None.
        error: the exception it raised, else None.
        duration_ms: how long it ran, in milliseconds.
        timed_out: its timeout interrupted it.
        truncated: output beyond the pool's output_limit was dropped.
    """

    stdout: str = ""
    stderr: str = ""
    result: Optional[str] = None
    error: Optional[CodeError] = None
    duration_ms: float = 0.0
    timed_out: bool = False
    truncated: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """No exception, no timeout."""
        return self.error is None and not self.timed_out

    @property
    def duration(self) -> datetime.timedelta:
        return datetime.timedelta(milliseconds=self.duration_ms)

    @classmethod
    def from_json(cls, w: Mapping[str, Any]) -> "CodeResult":
        def text(m: Mapping[str, Any], key: str) -> str:
            v = m.get(key)
            return v if isinstance(v, str) else ""

        err = w.get("error")
        result = w.get("result")
        duration = w.get("duration_ms")
        return cls(
            stdout=text(w, "stdout"),
            stderr=text(w, "stderr"),
            result=result if isinstance(result, str) else None,
            error=CodeError(text(err, "name"), text(err, "value"), text(err, "traceback"))
            if isinstance(err, dict) else None,
            duration_ms=float(duration) if isinstance(duration, (int, float)) else 0.0,
            timed_out=w.get("timed_out") is True,
            truncated=w.get("truncated") is True,
            raw=dict(w),
        )


class Context(ClosablePart):
    """A Python process in a lease whose runs share one namespace, until :meth:`close`
    (``with`` closes it on exit) or the lease's release.

    It runs the pool's ``interpreters.python`` command with its ``preload`` modules already
    imported (else ``python3``). A run over its ``timeout`` gets a KeyboardInterrupt and the
    context stays usable; a run that does not stop within a second of it is killed with its
    context, and the next run raises :class:`~warmpool.ShellExited` (open another one).

    Made by :meth:`warmpool.Lease.context`. One run at a time: a second one while the first
    runs raises :class:`~warmpool.Conflict`.
    """

    _collection = "contexts"
    _kind = "context"

    def run(self, code: str, timeout: Optional[Duration] = None) -> CodeResult:
        """Runs ``code`` (Python source) in the context and returns what it did. An
        exception in the code is a result (``.error``), not raised here.

        Args:
            code: statements; when the last one is an expression, its repr is ``.result``.
            timeout: the run's time limit (default: the pool's ``exec_timeout``).
        """
        if not isinstance(code, str):
            raise TypeError(f"code: Python source as a string (got {type(code).__name__})")
        body: Dict[str, Any] = {"code": code}
        if timeout is not None:
            body["timeout"] = wire_duration(timeout)
        answer = self._http.request("POST", self._path("/run"), body=body,
                                    extra_wait=wait_s(timeout))
        return CodeResult.from_json(answer.json())
