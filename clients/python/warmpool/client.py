"""The warmpool HTTP API (``warmpool serve``, docs/openapi.yaml) as a Python client."""

from __future__ import annotations

import os
import ssl
import time
from typing import Any, Dict, List, Mapping, Optional, Union

from ._http import Transport
from ._wire import exec_body as _exec_body
from ._wire import lease_path as _lease_path
from ._wire import seg as _seg
from ._wire import text as _text
from ._wire import wait_s as _wait_s
from .errors import ExecTimeout, NotReady
from .events import ExecStream
from .lease import Lease
from .types import (
    Command,
    Duration,
    ExecResult,
    Health,
    LeaseInfo,
    PoolStats,
    Size,
    duration_ms,
    wire_command,
    wire_duration,
)

__all__ = ["Client", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8080"


class Client:
    """A client of one ``warmpool serve``. Thread-safe; keeps connections alive between calls.

    Args:
        url: the server's base URL (default: ``$WARMPOOL_URL``, else http://127.0.0.1:8080).
        token: the bearer token (default: ``$WARMPOOL_TOKEN``; ``""`` sends none). Needed
            when the server has ``server.token`` or tenants; ``/healthz`` never needs one.
        timeout: seconds to wait for an answer (connect, and each read), **on top of** the
            time a request itself asks the server to take: an exec with ``timeout="5m"``
            waits up to 5 minutes plus this. A command without its own ``timeout`` runs under
            the pool's ``exec_timeout`` (30 s unless configured): keep this above it.
        ssl_context: for ``https://`` URLs (default: the system's trust store).
        headers: extra headers sent with every request.

    Every call raises a :class:`~warmpool.WarmpoolError` subclass on an error answer
    (:class:`~warmpool.PoolExhausted`, :class:`~warmpool.UnknownLease`, ...) and
    :class:`~warmpool.Unreachable` when no answer came.
    """

    def __init__(
        self,
        url: Optional[str] = None,
        token: Optional[str] = None,
        *,
        timeout: float = 60.0,
        ssl_context: Optional[ssl.SSLContext] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        if url is None:
            url = os.environ.get("WARMPOOL_URL") or DEFAULT_URL
        if token is None:
            token = os.environ.get("WARMPOOL_TOKEN") or None
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout: expected seconds > 0 (got {timeout!r})")
        self._http = Transport(url, token, float(timeout), ssl_context, headers)

    @property
    def url(self) -> str:
        return self._http.url

    def __repr__(self) -> str:
        return f"<warmpool.Client {self.url}>"

    def close(self) -> None:
        """Closes kept-alive connections. The client stays usable (it reconnects)."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- one-shot --------------------------------------------------------------------------

    def execute(
        self,
        command: Optional[Command] = None,
        *,
        code: Optional[str] = None,
        language: Optional[str] = None,
        pool: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
        session: Optional[str] = None,
        tenant: Optional[str] = None,
        stdin: Optional[Union[str, bytes]] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[Duration] = None,
        output_limit: Optional[Size] = None,
        raise_on_timeout: bool = True,
        shell: Optional[str] = None,
    ) -> ExecResult:
        """Runs one command in a pooled sandbox: acquire, exec, release.

        Args:
            command: a shell string (``/bin/sh -c``) or an argv list (no shell).
            code: instead of a command, Python source that the pool's warm interpreter
                (``interpreters.python``) runs as ``python3 -c CODE`` would, in a forked
                child of an interpreter that already imported the pool's ``preload``
                modules: the same result, without paying Python's start-up. A pool without
                ``interpreters.python`` refuses it (:class:`~warmpool.InvalidRequest`).
            language: the interpreter for ``code``; ``"python"`` (the default) is the one
                there is.
            pool: the pool; without it the server routes by ``labels`` and ``session``
                (its routing rules, else its default pool).
            labels: routing labels.
            session: a sticky session id: every request of the session runs in the same
                sandbox, so files written by one are there for the next (until the
                server's ``session_ttl`` passes idle).
            tenant: the tenant to act for (see the server's tenants).
            stdin: bytes fed to the command (bytes must be UTF-8: the API carries text).
            env: extra environment variables.
            cwd: working directory (default: the sandbox workspace).
            timeout: the command's time limit (:data:`~warmpool.Duration`: seconds, a
                timedelta or ``"5s"``; default: the pool's ``exec_timeout``).
            output_limit: bytes kept per stream (default: the pool's ``output_limit``).
            raise_on_timeout: when the command exceeds ``timeout`` its process group is
                killed and :class:`~warmpool.ExecTimeout` is raised with the partial output
                in ``.result``; False returns that result (``timed_out`` set) instead.
            shell: with ``session``: run ``command`` (a string) in the session's shell of
                this name, opened on first use and kept with the session, so a ``cd`` or an
                ``export`` holds for the session's next commands in that shell.

        Returns:
            the :class:`~warmpool.ExecResult`, whatever the exit code.
        """
        body = _exec_body(command, stdin, env, cwd, timeout, output_limit, code, language)
        body.update(_routing(pool, labels, session, tenant))
        if shell is not None:
            body["shell"] = shell
        return self._exec("/v1/execute", body, timeout, raise_on_timeout)

    def execute_stream(
        self,
        command: Optional[Command] = None,
        *,
        code: Optional[str] = None,
        language: Optional[str] = None,
        pool: Optional[str] = None,
        labels: Optional[Mapping[str, str]] = None,
        session: Optional[str] = None,
        tenant: Optional[str] = None,
        stdin: Optional[Union[str, bytes]] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[Duration] = None,
        output_limit: Optional[Size] = None,
        shell: Optional[str] = None,
    ) -> ExecStream:
        """:meth:`execute` with the output as it comes: an :class:`~warmpool.ExecStream` of
        :class:`~warmpool.OutputEvent` s and a last :class:`~warmpool.ExitEvent` (a timed-out
        command ends with ``timed_out`` set, nothing is raised). Errors before the command
        starts (an unknown pool, an exhausted one) are raised here.

            with client.execute_stream("make test", pool="py") as events:
                for ev in events:
                    if isinstance(ev, warmpool.OutputEvent):
                        print(ev.data, end="")

        Closing the stream early stops the command and gives the sandbox back (a session's
        shell stays, its command interrupted). A server that answers the whole result at
        once instead yields the same events (:attr:`~warmpool.ExecStream.streamed` is False)."""
        body = _exec_body(command, stdin, env, cwd, timeout, output_limit, code, language)
        body.update(_routing(pool, labels, session, tenant))
        if shell is not None:
            body["shell"] = shell
        return self._stream("/v1/execute", body, timeout)

    # -- leases ----------------------------------------------------------------------------

    def acquire(
        self,
        pool: Optional[str] = None,
        *,
        labels: Optional[Mapping[str, str]] = None,
        session: Optional[str] = None,
        tenant: Optional[str] = None,
        timeout: Optional[Duration] = None,
        dirty_on_error: bool = False,
        env: Optional[Mapping[str, str]] = None,
        files: Optional[Mapping[str, Union[str, bytes]]] = None,
        cwd: Optional[str] = None,
    ) -> Lease:
        """Acquires a sandbox and holds it until :meth:`Lease.release` (or the end of a
        ``with`` block: ``with client.acquire("py") as lease: ...``).

        Args:
            pool, labels, tenant: as in :meth:`execute`.
            session: hold that sticky session's sandbox (with its files) until release, when
                it goes back to the session; meanwhile the session's other requests answer
                :class:`~warmpool.BadRequest`.
            timeout: how long to wait for a free sandbox (default: the pool's
                ``acquire_timeout``); then :class:`~warmpool.PoolExhausted`.
            dirty_on_error: when a ``with`` block raises any exception, release the sandbox
                dirty (replaced, not reset). Without it only errors that say the sandbox is
                broken do.
            env: variables every command, shell and process of the lease sees (under
                their own). Never logged by the server.
            files: path -> content (text; bytes must be UTF-8) written into the sandbox
                before it is handed over; relative paths are under the workspace.
            cwd: the working directory of the lease's commands, shells and processes
                (default: the workspace).

        The setup is the lease's alone: the sandbox goes back reset, without it.
        """
        body: Dict[str, Any] = _routing(pool, labels, session, tenant)
        if timeout is not None:
            body["timeout"] = wire_duration(timeout)
        if env is not None:
            body["env"] = dict(env)
        if files is not None:
            body["files"] = {path: _text(data, f"files[{path!r}]") for path, data in files.items()}
        if cwd is not None:
            body["cwd"] = cwd
        answer = self._http.request("POST", "/v1/leases", body=body, extra_wait=_wait_s(timeout))
        return Lease(self, LeaseInfo.from_json(answer.json()), dirty_on_error=dirty_on_error)

    def lease(
        self,
        pool: Optional[str] = None,
        *,
        labels: Optional[Mapping[str, str]] = None,
        session: Optional[str] = None,
        tenant: Optional[str] = None,
        timeout: Optional[Duration] = None,
        dirty_on_error: bool = False,
        env: Optional[Mapping[str, str]] = None,
        files: Optional[Mapping[str, Union[str, bytes]]] = None,
        cwd: Optional[str] = None,
    ) -> Lease:
        """:meth:`acquire`, named to read well in ``with client.lease("py") as lease:``."""
        return self.acquire(pool, labels=labels, session=session, tenant=tenant,
                            timeout=timeout, dirty_on_error=dirty_on_error, env=env,
                            files=files, cwd=cwd)

    def attach(self, lease_id: str, *, dirty_on_error: bool = False) -> Lease:
        """A :class:`Lease` for an id acquired elsewhere (another process, a stored id);
        checks that it exists (:class:`~warmpool.UnknownLease` if not) and refreshes it."""
        return Lease(self, self.get_lease(lease_id), dirty_on_error=dirty_on_error)

    def get_lease(self, lease_id: str) -> LeaseInfo:
        """Describes a lease; also restarts its ``lease_ttl`` clock (a heartbeat)."""
        return LeaseInfo.from_json(self._http.request("GET", _lease_path(lease_id)).json())

    def exec(
        self,
        lease_id: str,
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
        """Runs a command under a held lease (see :meth:`Lease.exec`)."""
        body = _exec_body(command, stdin, env, cwd, timeout, output_limit, code, language)
        return self._exec(_lease_path(lease_id, "/exec"), body, timeout, raise_on_timeout)

    def exec_stream(
        self,
        lease_id: str,
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
        """Runs a command under a held lease, streaming (see :meth:`Lease.exec_stream`)."""
        body = _exec_body(command, stdin, env, cwd, timeout, output_limit, code, language)
        return self._stream(_lease_path(lease_id, "/exec"), body, timeout)

    def write_file(self, lease_id: str, path: str,
                   data: Union[bytes, bytearray, memoryview, str]) -> None:
        """Writes a file into a leased sandbox (see :meth:`Lease.write_file`)."""
        if isinstance(data, str):
            raw = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
        else:
            raise TypeError(f"data: expected bytes or str (got {type(data).__name__})")
        self._http.request("PUT", _lease_path(lease_id, "/files"), raw=raw,
                           query={"path": _path(path)})

    def read_file(self, lease_id: str, path: str) -> bytes:
        """Reads a file from a leased sandbox (see :meth:`Lease.read_file`)."""
        return self._http.request("GET", _lease_path(lease_id, "/files"),
                                  query={"path": _path(path)}).body

    def release(self, lease_id: str, *, dirty: bool = False) -> None:
        """Gives a leased sandbox back; ``dirty``: replace it instead of resetting it.
        :class:`~warmpool.UnknownLease` when the lease is already gone."""
        self._http.request("DELETE", _lease_path(lease_id),
                           query={"dirty": "true"} if dirty else None)

    # -- introspection ---------------------------------------------------------------------

    def pools(self) -> List[PoolStats]:
        """Stats of every pool (in a cluster: a row per pool and node)."""
        rows = self._http.request("GET", "/v1/pools").json().get("pools")
        return [PoolStats.from_json(p) for p in rows if isinstance(p, dict)] if isinstance(rows, list) else []

    def pool(self, name: str, *, node: Optional[str] = None) -> PoolStats:
        """One pool's stats with a row per sandbox; ``node`` picks a cluster node's row.
        :class:`~warmpool.UnknownPool` when there is no such pool."""
        return PoolStats.from_json(self._http.request(
            "GET", f"/v1/pools/{_seg(name)}", query={"node": node} if node is not None else None).json())

    def health(self) -> Health:
        """Liveness (``/healthz``, needs no token)."""
        return Health.from_json(self._http.request("GET", "/healthz").json())

    def ready(self) -> bool:
        """Readiness (``/readyz``): True once every pool has warmed, False while warming."""
        try:
            return self._http.request("GET", "/readyz").json().get("ready") is True
        except NotReady:
            return False

    def wait_ready(self, timeout: Duration = 60.0, interval: float = 0.1) -> None:
        """Waits until :meth:`ready`; :class:`~warmpool.NotReady` when ``timeout`` passes
        first (other errors, e.g. :class:`~warmpool.Unreachable`, are raised at once)."""
        deadline = time.monotonic() + duration_ms(timeout) / 1000.0
        while True:
            try:
                if self._http.request("GET", "/readyz").json().get("ready") is True:
                    return
            except NotReady:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(interval)

    def metrics(self) -> str:
        """The Prometheus text of ``/metrics``."""
        return self._http.request("GET", "/metrics").body.decode("utf-8", errors="replace")

    # -- shared ----------------------------------------------------------------------------

    def _exec(self, path: str, body: Dict[str, Any], timeout: Optional[Duration],
              raise_on_timeout: bool) -> ExecResult:
        try:
            answer = self._http.request("POST", path, body=body, extra_wait=_wait_s(timeout))
        except ExecTimeout as e:
            if raise_on_timeout:
                raise
            return e.result
        return ExecResult.from_json(answer.json())

    def _stream(self, path: str, body: Dict[str, Any], timeout: Optional[Duration]) -> ExecStream:
        # A read may wait as long as the command may stay silent: its timeout (the pool's
        # exec_timeout without one, which the client's own timeout should exceed), plus ours.
        return ExecStream(self._http.stream("POST", path, body=body,
                                            read_timeout=self._http.timeout + _wait_s(timeout)))


def _path(path: str) -> str:
    if not isinstance(path, str) or not path:
        raise ValueError(f"path: expected a non-empty string (got {path!r})")
    return path


def _routing(pool: Optional[str], labels: Optional[Mapping[str, str]], session: Optional[str],
             tenant: Optional[str]) -> Dict[str, Any]:
    body: Dict[str, Any] = {}
    if pool is not None:
        body["pool"] = pool
    if labels is not None:
        body["labels"] = dict(labels)
    if session is not None:
        body["session"] = session
    if tenant is not None:
        body["tenant"] = tenant
    return body
