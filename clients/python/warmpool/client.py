"""The warmpool HTTP API (``warmpool serve``, docs/openapi.yaml) as a Python client."""

from __future__ import annotations

import os
import ssl
import time
from typing import Any, Dict, List, Mapping, Optional, Union

from ._http import Transport
from .errors import ExecTimeout, NotReady
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
_QUOTE_SAFE = ""


def _seg(value: str) -> str:
    """One path segment (lease ids and pool names are the server's, but never trust them)."""
    from urllib.parse import quote

    return quote(value, safe=_QUOTE_SAFE)


def _lease_path(lease_id: str, suffix: str = "") -> str:
    if not isinstance(lease_id, str) or not lease_id:
        raise ValueError(f"lease_id: expected a non-empty string (got {lease_id!r})")
    return f"/v1/leases/{_seg(lease_id)}{suffix}"


def _wait_s(timeout: Optional[Duration]) -> float:
    """Seconds the server may take on purpose for a request with this ``timeout``."""
    if timeout is None:
        return 0.0
    try:
        return duration_ms(timeout) / 1000.0
    except (TypeError, ValueError):
        return 0.0  # the server says what is wrong with it


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
        command: Command,
        *,
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
    ) -> ExecResult:
        """Runs one command in a pooled sandbox: acquire, exec, release.

        Args:
            command: a shell string (``/bin/sh -c``) or an argv list (no shell).
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

        Returns:
            the :class:`~warmpool.ExecResult`, whatever the exit code.
        """
        body = _exec_body(command, stdin, env, cwd, timeout, output_limit)
        body.update(_routing(pool, labels, session, tenant))
        return self._exec("/v1/execute", body, timeout, raise_on_timeout)

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
        """
        body: Dict[str, Any] = _routing(pool, labels, session, tenant)
        if timeout is not None:
            body["timeout"] = wire_duration(timeout)
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
    ) -> Lease:
        """:meth:`acquire`, named to read well in ``with client.lease("py") as lease:``."""
        return self.acquire(pool, labels=labels, session=session, tenant=tenant,
                            timeout=timeout, dirty_on_error=dirty_on_error)

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
        command: Command,
        *,
        stdin: Optional[Union[str, bytes]] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        timeout: Optional[Duration] = None,
        output_limit: Optional[Size] = None,
        raise_on_timeout: bool = True,
    ) -> ExecResult:
        """Runs a command under a held lease (see :meth:`Lease.exec`)."""
        body = _exec_body(command, stdin, env, cwd, timeout, output_limit)
        return self._exec(_lease_path(lease_id, "/exec"), body, timeout, raise_on_timeout)

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


def _path(path: str) -> str:
    if not isinstance(path, str) or not path:
        raise ValueError(f"path: expected a non-empty string (got {path!r})")
    return path


def _exec_body(command: Command, stdin: Optional[Union[str, bytes]],
               env: Optional[Mapping[str, str]], cwd: Optional[str],
               timeout: Optional[Duration], output_limit: Optional[Size]) -> Dict[str, Any]:
    body: Dict[str, Any] = {"command": wire_command(command)}
    if stdin is not None:
        if isinstance(stdin, (bytes, bytearray)):
            try:
                stdin = bytes(stdin).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("stdin: the API carries stdin as text; these bytes are not "
                                 "UTF-8 (write them to a file and redirect it instead)") from None
        body["stdin"] = stdin
    if env is not None:
        body["env"] = dict(env)
    if cwd is not None:
        body["cwd"] = cwd
    if timeout is not None:
        body["timeout"] = wire_duration(timeout)
    if output_limit is not None:
        body["output_limit"] = output_limit
    return body


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
