"""Typed errors: one class per ``error.code`` of the API (docs/openapi.yaml).

Every error answer of ``warmpool serve`` is ``{"error": {"code", "message"}}``; the client
raises the subclass of :class:`WarmpoolError` that matches ``code``, so callers write
``except PoolExhausted:`` instead of comparing strings. The hierarchy groups codes that are
handled alike: :class:`UnknownPool` and :class:`UnknownLease` are :class:`NotFound`,
:class:`PoolExhausted`, :class:`BackendUnavailable`, :class:`ShuttingDown` and
:class:`NotReady` are :class:`Unavailable` (retry after :attr:`WarmpoolError.retry_after`),
:class:`ShellExited` is a :class:`Conflict`, :class:`TooLarge` a :class:`PayloadTooLarge` and
:class:`StillRunning` an :class:`ExecTimeout`.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Type

from .types import ExecResult

__all__ = [
    "WarmpoolError",
    "BadRequest",
    "InvalidRequest",
    "Unauthorized",
    "NotFound",
    "UnknownPool",
    "UnknownLease",
    "PayloadTooLarge",
    "TooLarge",
    "Conflict",
    "ShellExited",
    "Unavailable",
    "PoolExhausted",
    "BackendUnavailable",
    "ShuttingDown",
    "NotReady",
    "ContainerFailed",
    "NodeLost",
    "ExecTimeout",
    "StillRunning",
    "ConfigInvalid",
    "InternalError",
    "Unreachable",
    "error_class",
    "status_of",
]


class WarmpoolError(Exception):
    """An error answer of the API, or no answer at all (:class:`Unreachable`).

    Attributes:
        status: the HTTP status; 0 when the server gave no answer.
        code: the API's stable error name, e.g. ``"pool_exhausted"``; ``"http_error"`` for an
            error answer without the API's envelope (e.g. a proxy's page), ``"unreachable"``
            when no answer came.
        message: the server's sentence (it names the offending field where there is one).
        retry_after: seconds the server asked to wait before retrying (``Retry-After``, sent
            with every 503), else None.
        body: the parsed answer (the error envelope, or a timed-out command's partial result).
    """

    status: int
    code: str
    message: str
    retry_after: Optional[float]
    body: Any

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: Optional[float] = None,
        body: Any = None,
    ) -> None:
        prefix = f"HTTP {status} {code}" if status else code
        super().__init__(f"{prefix}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.body = body

    def __reduce__(self) -> Tuple[Any, ...]:  # keep the fields through pickling (multiprocessing, concurrent.futures)
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: Type[WarmpoolError], state: Dict[str, Any]) -> WarmpoolError:
    err = cls.__new__(cls)
    Exception.__init__(err, f"HTTP {state['status']} {state['code']}: {state['message']}")
    err.__dict__.update(state)
    return err


class BadRequest(WarmpoolError):
    """400 ``invalid_request``: malformed JSON, a missing or wrong-typed field (the message
    names it), or an operation the sandbox refused (e.g. reading a file that does not exist)."""


InvalidRequest = BadRequest  # the API's name for it


class Unauthorized(WarmpoolError):
    """401 ``unauthorized``: missing or wrong bearer token."""


class NotFound(WarmpoolError):
    """404 ``not_found``: no shell or process with that id in the lease, or no route at that
    path (also the base of the two below)."""


class UnknownPool(NotFound):
    """404 ``unknown_pool``: no pool of that name (on that node)."""


class UnknownLease(NotFound):
    """404 ``unknown_lease``: the lease id is unknown, was released, or expired after
    ``server.lease_ttl`` untouched (or belongs to another tenant)."""


class PayloadTooLarge(WarmpoolError):
    """413 ``payload_too_large``: the request body exceeds the server's ``max_body``."""


class TooLarge(PayloadTooLarge):
    """413 ``too_large``: the request carries more data than that operation takes (a stdin
    write over 1 MiB), though the body is within ``max_body``. Split the data."""


class Conflict(WarmpoolError):
    """409 ``conflict``: the shell or process is not in a state that allows the call: stdin
    written after it was closed or after the process ended, a shell still running another
    command."""


class ShellExited(Conflict):
    """409 ``shell_exited``: the shell's own process ended (``exit``, killed); the shell is
    gone, open a new one (:meth:`warmpool.Lease.open_shell`) to go on."""


class Unavailable(WarmpoolError):
    """503 family: the server asks to retry later (after :attr:`retry_after` seconds)."""


class PoolExhausted(Unavailable):
    """503 ``pool_exhausted``: no sandbox became free before the acquire deadline."""


class BackendUnavailable(Unavailable):
    """503 ``backend_unavailable``: the pool's backend (bubblewrap, dockerd) cannot be used."""


class ShuttingDown(Unavailable):
    """503 ``shutting_down``: the server is stopping and admits no new work."""


class NotReady(Unavailable):
    """503 ``not_ready`` (``/readyz``): the pools are still warming."""


class ContainerFailed(WarmpoolError):
    """502 ``container_failed``: the sandbox died or misbehaved during the operation."""


class NodeLost(ContainerFailed):
    """502 ``node_lost``: the cluster node holding the sandbox is gone; so is the lease."""


class ExecTimeout(WarmpoolError):
    """504 ``exec_timeout``: the command exceeded its timeout and its process group was killed.

    :attr:`result` holds what the command wrote until then (``result.timed_out`` is True).
    Pass ``raise_on_timeout=False`` to an exec to get that result returned instead.
    """

    result: ExecResult

    def __init__(self, status: int, code: str, message: str, *,
                 result: Optional[ExecResult] = None, retry_after: Optional[float] = None,
                 body: Any = None) -> None:
        super().__init__(status, code, message, retry_after=retry_after, body=body)
        if result is None:
            result = ExecResult.from_json(body if isinstance(body, dict) else {"timed_out": True})
        self.result = result


class StillRunning(ExecTimeout):
    """504 ``exec_timeout`` from :meth:`warmpool.Process.wait`: the process is still running
    when the wait's timeout passed. Unlike a command's timeout nothing was killed: wait
    again, signal it, or :meth:`~warmpool.Process.kill` it. :attr:`result` is empty."""


class ConfigInvalid(WarmpoolError):
    """500 ``config_invalid``: the server's configuration is invalid."""


class InternalError(WarmpoolError):
    """500 ``internal``: an unexpected failure in the server (a bug worth reporting)."""


class Unreachable(WarmpoolError):
    """No HTTP answer (status 0, code ``unreachable``): connection refused or reset, a name
    that does not resolve, or the client's own timeout passed."""


_BY_CODE: Dict[str, Type[WarmpoolError]] = {
    "invalid_request": BadRequest,
    "unauthorized": Unauthorized,
    "not_found": NotFound,
    "unknown_pool": UnknownPool,
    "unknown_lease": UnknownLease,
    "payload_too_large": PayloadTooLarge,
    "too_large": TooLarge,
    "conflict": Conflict,
    "shell_exited": ShellExited,
    "pool_exhausted": PoolExhausted,
    "backend_unavailable": BackendUnavailable,
    "shutting_down": ShuttingDown,
    "not_ready": NotReady,
    "container_failed": ContainerFailed,
    "node_lost": NodeLost,
    "exec_timeout": ExecTimeout,
    "config_invalid": ConfigInvalid,
    "internal": InternalError,
    "unreachable": Unreachable,
}


def error_class(code: str, status: int = 0) -> Type[WarmpoolError]:
    """The class for an error code. A code this version does not know stays a plain
    :class:`WarmpoolError` (an :class:`Unavailable` when the status is 503)."""
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls
    return Unavailable if status == 503 else WarmpoolError


_STATUS: Dict[str, int] = {
    "invalid_request": 400,
    "unauthorized": 401,
    "not_found": 404,
    "unknown_pool": 404,
    "unknown_lease": 404,
    "conflict": 409,
    "shell_exited": 409,
    "payload_too_large": 413,
    "too_large": 413,
    "container_failed": 502,
    "node_lost": 502,
    "pool_exhausted": 503,
    "backend_unavailable": 503,
    "shutting_down": 503,
    "not_ready": 503,
    "exec_timeout": 504,
}


def status_of(code: str) -> int:
    """The HTTP status the server answers with for an error code (500 for one it does not
    list; 0 for ``unreachable``). Used for errors that arrive inside a stream, after its
    200 went out."""
    if code == "unreachable":
        return 0
    return _STATUS.get(code, 500)
