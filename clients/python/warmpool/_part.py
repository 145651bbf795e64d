"""What a shell, a context and a background process share: the lease they live in, their
id and path, and ``with`` that ends them. Internal."""

from __future__ import annotations

from types import TracebackType
from typing import Optional, Type, TypeVar

from ._http import Transport
from ._wire import lease_path, seg
from .errors import NotFound, UnknownLease

P = TypeVar("P", bound="LeasePart")


class LeasePart:
    _collection = ""  # its path under the lease: "shells", "contexts", "processes"
    _kind = ""        # what an error calls its id

    def __init__(self, http: Transport, lease_id: str, part_id: str) -> None:
        self._http = http
        self._lease_id = lease_id
        self._id = part_id

    @property
    def id(self) -> str:
        """Its id (the name it was opened with, or one the server chose)."""
        return self._id

    @property
    def lease_id(self) -> str:
        return self._lease_id

    def _path(self, suffix: str = "") -> str:
        return lease_path(self._lease_id, f"/{self._collection}/{seg(self._id, self._kind)}{suffix}")

    def _end(self) -> None:
        raise NotImplementedError

    def __enter__(self: P) -> P:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        try:
            self._end()
        except Exception:
            if exc is None:
                raise


class ClosablePart(LeasePart):
    """A part that lives until :meth:`close`: a shell or a context."""

    def __init__(self, http: Transport, lease_id: str, part_id: str) -> None:
        super().__init__(http, lease_id, part_id)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<warmpool.{type(self).__name__} {self._id} lease={self._lease_id} {state}>"

    def close(self) -> None:
        """Ends it and whatever it runs. A second call, or one already gone with its lease,
        does nothing."""
        if self._closed:
            return
        try:
            self._http.request("DELETE", self._path())
        except (NotFound, UnknownLease):
            pass
        self._closed = True

    def _end(self) -> None:
        self.close()
