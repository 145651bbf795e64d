"""A held sandbox: commands and files in it until it is released."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Type, Union

from ._wire import exec_body, lease_path, shown
from .errors import ContainerFailed, ExecTimeout, StillRunning, UnknownLease
from .events import ExecStream
from .context import Context
from .process import Process, ProcessInfo
from .shell import Shell, ShellInfo
from .types import Command, Duration, ExecResult, LeaseInfo, Size

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["Lease"]


class Lease:
    """A sandbox held for this client until :meth:`release` (``with`` releases it on exit).

    Made by :meth:`Client.lease` / :meth:`Client.acquire` (or :meth:`Client.attach` for a
    lease id from elsewhere). Everything done through it runs in the same sandbox: files a
    command writes are there for the next one. Each :meth:`exec` starts in the workspace (or
    the lease's ``cwd``) with a fresh environment; for state that carries over (``cd``,
    ``export``, functions) run commands in a :meth:`shell`. :meth:`start_process` starts
    background processes (a dev server) that later commands can reach. Release ends every
    shell and process of the lease.

    Leaving a ``with`` block releases the lease. When the block raised, the sandbox is
    released *dirty* (replaced instead of reset for the next caller) if the error says it is
    broken (:class:`ContainerFailed`, :class:`NodeLost`, :class:`ExecTimeout`, the rule the
    server applies to its own one-shot executes), or for any exception when the lease was
    made with ``dirty_on_error=True``. An error while releasing never hides the block's own.

    A lease untouched for the server's ``lease_ttl`` is released by the server; any call on
    it, or :meth:`refresh`, counts as activity.
    """

    def __init__(self, client: "Client", info: LeaseInfo, *, dirty_on_error: bool = False) -> None:
        self._client = client
        self._http = client._http
        self._info = info
        self._released = False
        self.dirty_on_error = dirty_on_error

    # -- what it is ----------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The lease id: whoever has it may use the sandbox (see :meth:`Client.attach`)."""
        return self._info.id

    @property
    def info(self) -> LeaseInfo:
        """The lease as the server described it at acquire (or the last :meth:`refresh`)."""
        return self._info

    @property
    def pool(self) -> str:
        return self._info.pool

    @property
    def container(self) -> str:
        return self._info.container

    @property
    def node(self) -> str:
        return self._info.node

    @property
    def tenant(self) -> str:
        return self._info.tenant

    @property
    def session(self) -> str:
        return self._info.session

    @property
    def released(self) -> bool:
        """Whether :meth:`release` was called (the server may also have released it after
        ``lease_ttl`` untouched; calls then raise :class:`UnknownLease`)."""
        return self._released

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<warmpool.Lease {self.id} pool={self.pool!r} container={self.container!r} {state}>"

    # -- work in it ----------------------------------------------------------------------

    def exec(
        self,
        command: Optional[Command] = None,
        *,
        code: Optional[str] = None,
        language: Optional[str] = None,
        stdin: Optional[Union[str, bytes]] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[Duration] = None,
        output_limit: Optional[Size] = None,
        raise_on_timeout: bool = True,
    ) -> ExecResult:
        """Runs ``command`` (or Python ``code``) in this sandbox and returns its result (a
        non-zero exit is a result). See :meth:`Client.execute` for the arguments; a command
        over ``timeout``
        raises :class:`ExecTimeout` (its ``.result`` has the partial output), or returns that
        result with ``timed_out`` set when ``raise_on_timeout`` is False."""
        return self._client.exec(self.id, command, code=code, language=language, stdin=stdin,
                                 env=env, cwd=cwd, timeout=timeout, output_limit=output_limit,
                                 raise_on_timeout=raise_on_timeout)

    def exec_stream(
        self,
        command: Optional[Command] = None,
        *,
        code: Optional[str] = None,
        language: Optional[str] = None,
        stdin: Optional[Union[str, bytes]] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[Duration] = None,
        output_limit: Optional[Size] = None,
    ) -> ExecStream:
        """:meth:`exec` with the output as it comes: an :class:`ExecStream` of
        :class:`OutputEvent` s, then an :class:`ExitEvent`. Closing it early stops the
        command (the lease stays)."""
        return self._client.exec_stream(self.id, command, code=code, language=language,
                                        stdin=stdin, env=env, cwd=cwd, timeout=timeout,
                                        output_limit=output_limit)

    # -- shells and processes ------------------------------------------------------------

    def open_shell(self, name: Optional[str] = None) -> Shell:
        """Opens a persistent shell in the sandbox (see :class:`Shell`); ``name`` names it
        (the server picks an id without one). Close it with :meth:`Shell.close`, a ``with``
        block, or by releasing the lease."""
        body: Optional[Dict[str, Any]] = {"name": name} if name is not None else None
        answer = self._http.request("POST", lease_path(self.id, "/shells"), body=body)
        return Shell(self._http, self.id, str(answer.json().get("id", name or "")))

    def shell(self, name: Optional[str] = None) -> Shell:
        """:meth:`open_shell`, named to read well in ``with lease.shell() as sh:``."""
        return self.open_shell(name)

    def shells(self) -> List[ShellInfo]:
        """The lease's shells, by id; one whose process ended stays listed (``running``
        False) until it is closed or opened again."""
        return self._listed("shells")

    def contexts(self) -> List[ShellInfo]:
        """The lease's code contexts, by id; one whose process ended stays listed
        (``running`` False) until it is closed or opened again."""
        return self._listed("contexts")

    def _listed(self, collection: str) -> List[ShellInfo]:
        rows = self._http.request("GET", lease_path(self.id, "/" + collection)).json().get(collection)
        return [ShellInfo.from_json(r) for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    def open_context(self, name: Optional[str] = None) -> Context:
        """Opens a stateful Python code context in the sandbox (see :class:`Context`);
        ``name`` names it (the server picks an id without one)."""
        body: Optional[Dict[str, Any]] = {"name": name} if name is not None else None
        answer = self._http.request("POST", lease_path(self.id, "/contexts"), body=body)
        return Context(self._http, self.id, str(answer.json().get("id", name or "")))

    def context(self, name: Optional[str] = None) -> Context:
        """:meth:`open_context`, named to read well in ``with lease.context() as ctx:``."""
        return self.open_context(name)

    def attach_context(self, context_id: str) -> Context:
        """A :class:`Context` for the id of a context opened elsewhere (no request is made:
        its runs raise :class:`NotFound` if there is no such context)."""
        return Context(self._http, self.id, context_id)

    def attach_shell(self, shell_id: str) -> Shell:
        """A :class:`Shell` for the id of a shell opened elsewhere (no request is made: its
        commands raise :class:`NotFound` if there is no such shell)."""
        return Shell(self._http, self.id, shell_id)

    def start_process(
        self,
        command: Optional[Command] = None,
        *,
        code: Optional[str] = None,
        language: Optional[str] = None,
        tty: bool = False,
        cols: int = 80,
        rows: int = 24,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        stdin: Optional[Union[str, bytes]] = None,
        timeout: Optional[Duration] = None,
        output_limit: Optional[Size] = None,
    ) -> Process:
        """Starts ``command`` in the background and returns at once with its
        :class:`Process` (``with`` kills it at the block's end).

        Args:
            command: a shell string or an argv list, as for :meth:`exec`.
            code, language: instead of a command, Python source run by the pool's warm
                interpreter, as for :meth:`Client.execute`.
            tty: run it on a pseudo-terminal of ``cols`` x ``rows`` (its stdout and stderr
                are then one stream, reported as stdout).
            env, cwd: as for :meth:`exec`.
            stdin: written to its stdin first; stdin stays open for
                :meth:`Process.write_stdin` until :meth:`Process.close_stdin`.
            timeout: kill it after this long (default: never, until the release).
            output_limit: bytes of each stream the server keeps (the last ones).
        """
        body = exec_body(command, stdin, env, cwd, timeout, output_limit, code, language)
        if tty:
            body.update({"tty": True, "cols": cols, "rows": rows})
        answer = self._http.request("POST", lease_path(self.id, "/processes"), body=body)
        return Process(self._http, self.id, str(answer.json().get("id", "")),
                       shown(command, language))

    def attach_process(self, process_id: str) -> Process:
        """A :class:`Process` for an id from :meth:`processes` or from elsewhere (no request
        is made: its calls raise :class:`NotFound` if there is no such process)."""
        return Process(self._http, self.id, process_id)

    def processes(self) -> List[ProcessInfo]:
        """The lease's background processes, running or ended (until killed/forgotten)."""
        rows = self._http.request("GET", lease_path(self.id, "/processes")).json().get("processes")
        return [ProcessInfo.from_json(p) for p in rows if isinstance(p, dict)] if isinstance(rows, list) else []

    # -- files ---------------------------------------------------------------------------

    def write_file(self, path: str, data: Union[bytes, bytearray, memoryview, str]) -> None:
        """Writes ``data`` (bytes as they are; a str as UTF-8) to ``path``; a relative path is
        under the workspace. Parent directories are created."""
        self._client.write_file(self.id, path, data)

    def read_file(self, path: str) -> bytes:
        """The bytes of ``path`` (:class:`BadRequest` when it does not exist)."""
        return self._client.read_file(self.id, path)

    def read_text(self, path: str, encoding: str = "utf-8", errors: str = "strict") -> str:
        """:meth:`read_file`, decoded."""
        return self.read_file(path).decode(encoding, errors)

    def refresh(self) -> LeaseInfo:
        """Asks the server for the lease (a heartbeat: it restarts the ``lease_ttl`` clock).
        Raises :class:`UnknownLease` when it is gone."""
        self._info = self._client.get_lease(self.id)
        return self._info

    def release(self, dirty: bool = False) -> None:
        """Gives the sandbox back. ``dirty``: do not reuse it (it is replaced, not reset).
        A second call does nothing; a lease the server already released (``lease_ttl``)
        counts as released."""
        if self._released:
            return
        try:
            self._client.release(self.id, dirty=dirty)
        except UnknownLease:
            pass
        self._released = True

    # -- context manager -----------------------------------------------------------------

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        if exc is None:
            self.release()
            return
        broken = (isinstance(exc, (ContainerFailed, ExecTimeout)) and not isinstance(exc, StillRunning)) or (
            self.dirty_on_error and isinstance(exc, Exception))
        try:
            self.release(dirty=broken)
        except Exception as e:  # the block's own error is the one to see
            note = f"warmpool: releasing lease {self.id} also failed: {e}"
            if hasattr(exc, "add_note"):
                exc.add_note(note)  # Python 3.11+
