"""The API's answers as dataclasses, and the request value types.

The wire format is docs/openapi.yaml's snake_case JSON; the field names here are the same.
Each class keeps the JSON it was made from in ``raw`` (not compared, not shown), so a field a
newer server adds is reachable before this package names it.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

__all__ = [
    "Command",
    "Duration",
    "Size",
    "ExecResult",
    "LeaseInfo",
    "ContainerStats",
    "PoolStats",
    "Health",
]

Command = Union[str, Sequence[str]]
"""A shell string (run by ``/bin/sh -c``) or an argv list (run directly, no shell)."""

Duration = Union[str, int, float, datetime.timedelta]
"""A number of **seconds** (as in :mod:`subprocess` and :mod:`socket`), a
:class:`datetime.timedelta`, or the server's own spelling: ``"500ms"``, ``"5s"``, ``"2m"``,
``"1h30m"``. At most 24 hours."""

Size = Union[str, int]
"""Bytes: a number, or a size like ``"64k"``, ``"1m"``."""

_Wire = Mapping[str, Any]


def _str(w: _Wire, key: str) -> str:
    v = w.get(key)
    return v if isinstance(v, str) else ""


def _int(w: _Wire, key: str, default: int = 0) -> int:
    v = w.get(key)
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default


def _float(w: _Wire, key: str) -> float:
    v = w.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def _counts(w: _Wire, key: str) -> Dict[str, int]:
    v = w.get(key)
    return {str(k): int(n) for k, n in v.items()} if isinstance(v, dict) else {}


@dataclass(frozen=True)
class ExecResult:
    """What a command did. A non-zero exit is a result, not an error.

    Attributes:
        stdout, stderr: the command's output (invalid UTF-8 replaced by U+FFFD), each cut at
            the output limit (then ``truncated`` is set).
        exit_code: the exit status; -1 when a signal ended the command.
        signal: the signal that ended it, 0 if it exited.
        duration_ms: how long the command ran, in milliseconds.
        timed_out: the command exceeded its timeout and its process group was killed.
        truncated: output was cut at the output limit.
        container, pool, node: where it ran.
        lease: the lease it ran under (lease exec, or execute with a session), else None.
        session: the sticky session, when the request named one.
    """

    stdout: str = ""
    stderr: str = ""
    exit_code: int = -1
    signal: int = 0
    duration_ms: float = 0.0
    timed_out: bool = False
    truncated: bool = False
    container: str = ""
    pool: str = ""
    node: str = ""
    lease: Optional[str] = None
    session: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Exited with 0, not killed, not timed out."""
        return self.exit_code == 0 and self.signal == 0 and not self.timed_out

    @property
    def duration(self) -> datetime.timedelta:
        """``duration_ms`` as a :class:`datetime.timedelta`."""
        return datetime.timedelta(milliseconds=self.duration_ms)

    @classmethod
    def from_json(cls, w: _Wire) -> "ExecResult":
        lease = w.get("lease")
        session = w.get("session")
        return cls(
            stdout=_str(w, "stdout"),
            stderr=_str(w, "stderr"),
            exit_code=_int(w, "exit_code", -1),
            signal=_int(w, "signal"),
            duration_ms=_float(w, "duration_ms"),
            timed_out=w.get("timed_out") is True,
            truncated=w.get("truncated") is True,
            container=_str(w, "container"),
            pool=_str(w, "pool"),
            node=_str(w, "node"),
            lease=lease if isinstance(lease, str) else None,
            session=session if isinstance(session, str) else None,
            raw=dict(w),
        )


@dataclass(frozen=True)
class LeaseInfo:
    """A held sandbox as the server describes it.

    Attributes:
        id: the lease id (a capability: whoever has it may use the sandbox).
        pool, container, node: the sandbox.
        tenant: the tenant owning the lease ("" without tenants).
        session: the sticky session it holds ("" when none).
        expires_in_ms: the server releases the lease when untouched this long.
    """

    id: str
    pool: str = ""
    container: str = ""
    node: str = ""
    tenant: str = ""
    session: str = ""
    expires_in_ms: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, w: _Wire) -> "LeaseInfo":
        return cls(
            id=_str(w, "id"),
            pool=_str(w, "pool"),
            container=_str(w, "container"),
            node=_str(w, "node"),
            tenant=_str(w, "tenant"),
            session=_str(w, "session"),
            expires_in_ms=_int(w, "expires_in_ms"),
            raw=dict(w),
        )


@dataclass(frozen=True)
class ContainerStats:
    """One sandbox of a pool (a row of :attr:`PoolStats.containers`)."""

    id: str
    state: str = ""
    uses: int = 0
    age_ms: int = 0
    last_probe_ms_ago: Optional[int] = None  # None: never probed
    last_probe_ok: bool = True
    restarts: int = 0
    lease_id: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, w: _Wire) -> "ContainerStats":
        probe = w.get("last_probe_ms_ago")
        lease_id = w.get("lease_id")
        return cls(
            id=_str(w, "id"),
            state=_str(w, "state"),
            uses=_int(w, "uses"),
            age_ms=_int(w, "age_ms"),
            last_probe_ms_ago=int(probe) if isinstance(probe, (int, float)) and probe >= 0 else None,
            last_probe_ok=w.get("last_probe_ok") is not False,
            restarts=_int(w, "restarts"),
            lease_id=lease_id if isinstance(lease_id, str) and lease_id else None,
            raw=dict(w),
        )


@dataclass(frozen=True)
class PoolStats:
    """Counters and gauges of one pool (on one node).

    Gauges: ``total``, ``idle`` (warm, ready to lease), ``leased``, ``creating``, ``waiting``
    (acquirers queued), ``states`` (sandboxes per lifecycle state). Counters: ``hits`` (acquires
    served warm), ``misses``, ``exhausted``, ``recycled``, ``failed``, ``probe_failures``,
    ``executions``, ``fresh`` (one-off sandboxes), ``retired`` (per reason).
    ``containers`` has a row per sandbox.
    """

    name: str
    backend: str = ""
    node: str = ""
    enabled: bool = True
    min_idle: int = 0
    max_size: int = 0
    total: int = 0
    idle: int = 0
    leased: int = 0
    creating: int = 0
    waiting: int = 0
    states: Dict[str, int] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    exhausted: int = 0
    recycled: int = 0
    failed: int = 0
    probe_failures: int = 0
    executions: int = 0
    fresh: int = 0
    retired: Dict[str, int] = field(default_factory=dict)
    transitions: Dict[str, int] = field(default_factory=dict)
    containers: List[ContainerStats] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def hit_rate(self) -> float:
        """Share of acquires served by a warm sandbox (0.0 before the first acquire)."""
        n = self.hits + self.misses
        return self.hits / n if n else 0.0

    @classmethod
    def from_json(cls, w: _Wire) -> "PoolStats":
        rows = w.get("containers")
        return cls(
            name=_str(w, "name"),
            backend=_str(w, "backend"),
            node=_str(w, "node"),
            enabled=w.get("enabled") is not False,
            min_idle=_int(w, "min_idle"),
            max_size=_int(w, "max_size"),
            total=_int(w, "total"),
            idle=_int(w, "idle"),
            leased=_int(w, "leased"),
            creating=_int(w, "creating"),
            waiting=_int(w, "waiting"),
            states=_counts(w, "states"),
            hits=_int(w, "hits"),
            misses=_int(w, "misses"),
            exhausted=_int(w, "exhausted"),
            recycled=_int(w, "recycled"),
            failed=_int(w, "failed"),
            probe_failures=_int(w, "probe_failures"),
            executions=_int(w, "executions"),
            fresh=_int(w, "fresh"),
            retired=_counts(w, "retired"),
            transitions=_counts(w, "transitions"),
            containers=[ContainerStats.from_json(c) for c in rows if isinstance(c, dict)]
            if isinstance(rows, list) else [],
            raw=dict(w),
        )


@dataclass(frozen=True)
class Health:
    """``/healthz``: the server and its engine answer."""

    status: str
    pools: int = 0  # the number of pools
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, w: _Wire) -> "Health":
        return cls(status=_str(w, "status"), pools=_int(w, "pools"), raw=dict(w))


# -- request values ------------------------------------------------------------------------

_UNITS = {"ms": 1.0, "s": 1000.0, "sec": 1000.0, "m": 60e3, "min": 60e3, "h": 3600e3, "d": 86400e3}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([a-z]*)")


def duration_ms(value: Duration, name: str = "timeout") -> float:
    """A :data:`Duration` in milliseconds (ValueError/TypeError naming ``name`` when it is
    not one). Strings follow the server's grammar: ``"1h30m"``, ``"500ms"``, a lone number
    is seconds."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected seconds, a timedelta or a string like '5s' (got {value!r})")
    if isinstance(value, datetime.timedelta):
        ms = value.total_seconds() * 1000.0
    elif isinstance(value, (int, float)):
        ms = float(value) * 1000.0
    elif isinstance(value, str):
        text = value.strip().lower()
        pos, ms = 0, 0.0
        while pos < len(text):
            m = _PART.match(text, pos)
            if not m or (m.group(2) and m.group(2) not in _UNITS):
                raise ValueError(f"{name}: expected a duration like '500ms', '5s' or '2m' (got {value!r})")
            if not m.group(2) and (pos or m.end() != len(text)):
                raise ValueError(f"{name}: a number without a unit must stand alone (got {value!r})")
            ms += float(m.group(1)) * _UNITS[m.group(2) or "s"]
            pos = m.end()
        if not text:
            raise ValueError(f"{name}: empty duration")
    else:
        raise TypeError(f"{name}: expected seconds, a timedelta or a string like '5s' (got {value!r})")
    if not (0 <= ms <= 24 * 3600e3) or ms != ms:
        raise ValueError(f"{name}: must be between 0 and 24h (got {value!r})")
    return ms


def wire_duration(value: Duration, name: str = "timeout") -> Union[str, float, int]:
    """A :data:`Duration` as the API takes it: strings as they are (the server parses and
    checks them), numbers and timedeltas as milliseconds."""
    if isinstance(value, str):
        return value
    ms = duration_ms(value, name)
    return int(ms) if ms == int(ms) else ms


def wire_command(command: Command) -> Union[str, List[str]]:
    if isinstance(command, str):
        return command
    if isinstance(command, (bytes, bytearray)):
        raise TypeError("command: expected a shell string or a list of strings (got bytes)")
    argv = list(command)
    for a in argv:
        if not isinstance(a, str):
            raise TypeError(f"command: every argv element must be a str (got {a!r})")
    return argv
