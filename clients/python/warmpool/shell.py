"""A persistent shell in a leased sandbox: state carries over between its commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ._part import ClosablePart
from ._wire import wait_s
from .errors import ExecTimeout
from .events import ExecStream
from .types import Duration, ExecResult, _int, _str, wire_duration

__all__ = ["Shell", "ShellInfo"]


@dataclass(frozen=True)
class ShellInfo:
    """A shell or a code context as :meth:`warmpool.Lease.shells` and
    :meth:`warmpool.Lease.contexts` list it.

    Attributes:
        id: its name in the lease.
        running: its process lives; False once it ended (listed until closed or opened
            again under this id).
        busy: a command (in a context: a run) is going on in it.
        pid: its process inside the sandbox.
    """

    id: str
    running: bool = False
    busy: bool = False
    pid: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, w: Dict[str, Any]) -> "ShellInfo":
        return cls(id=_str(w, "id"), running=w.get("running") is True, busy=w.get("busy") is True,
                   pid=_int(w, "pid"), raw=dict(w))


class Shell(ClosablePart):
    """A shell (bash where the sandbox has it, else sh) open in a lease until :meth:`close`
    (``with`` closes it on exit) or the lease's release.

    Each command sees what earlier ones left: the working directory, variables, functions,
    aliases. It returns its own output and exit code. A command over its ``timeout`` is
    interrupted (SIGINT to its process group, then SIGKILL) and the shell stays usable. When
    the shell's own process ends (``exit``), its next command raises
    :class:`~warmpool.ShellExited`: open another one.

    Made by :meth:`warmpool.Lease.open_shell` (or :meth:`warmpool.Lease.shell`). One command
    at a time: a second one while the first runs raises :class:`~warmpool.Conflict`.
    """

    _collection = "shells"
    _kind = "shell"

    def _body(self, command: str, timeout: Optional[Duration]) -> Dict[str, Any]:
        if not isinstance(command, str):
            raise TypeError(f"command: a shell runs a string (got {type(command).__name__})")
        body: Dict[str, Any] = {"command": command}
        if timeout is not None:
            body["timeout"] = wire_duration(timeout)
        return body

    def run(self, command: str, timeout: Optional[Duration] = None, *,
            raise_on_timeout: bool = True) -> ExecResult:
        """Runs ``command`` in the shell and returns its result once it ended (a non-zero
        exit is a result).

        Args:
            command: shell text, as typed at a prompt (several lines are fine; no NUL).
            timeout: the command's time limit (default: the pool's ``exec_timeout``).
            raise_on_timeout: a command over ``timeout`` is interrupted and
                :class:`~warmpool.ExecTimeout` raised with the partial output in ``.result``
                (the shell itself goes on); False returns that result instead.
        """
        try:
            answer = self._http.request("POST", self._path("/exec"), body=self._body(command, timeout),
                                        extra_wait=wait_s(timeout))
        except ExecTimeout as e:
            if raise_on_timeout:
                raise
            return e.result
        return ExecResult.from_json(answer.json())

    def stream(self, command: str, timeout: Optional[Duration] = None) -> ExecStream:
        """Runs ``command`` in the shell and returns its output as it comes (an
        :class:`~warmpool.ExecStream` of events). Closing the stream before the exit
        interrupts the command; the shell stays."""
        return ExecStream(self._http.stream(
            "POST", self._path("/exec"), body=self._body(command, timeout),
            read_timeout=self._http.timeout + wait_s(timeout)))
