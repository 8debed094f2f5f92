"""Cursors handed out by pooled SQLite connections.

A plain ``sqlite3.Cursor`` would expose the raw pooled connection through ``cursor.connection`` (and the
row-factory callbacks that receive the cursor), letting legacy code close it or change it behind the
proxy's back, and it would keep working after the proxy is closed, on a connection by then lent to
someone else. :class:`PooledCursor` subclasses the C cursor, so every method keeps C speed and
``isinstance(cur, sqlite3.Cursor)`` holds, but ``connection`` returns the proxy and every operation first
applies the proxy's checks (caller's thread, proxy still open), in sqlite3's order. Like sqlite3's own
cursors, they have no ``__dict__``: two slots, set once per cursor, are all a pooled cursor adds.

The cursors of a proxy shared between threads (``check_same_thread=False``) are the lock-serialised
variant of their class (:mod:`db_utils.sqlite.shared` says why the others need no lock).
"""

from __future__ import annotations

import operator
import sqlite3
import threading
from collections.abc import Iterable
from typing import Any, Protocol

from db_utils.sqlite.shared import serialised

_ARRAYSIZE: Any = object()  # "size not given" for fetchmany


class CursorOwner(Protocol):
    """What a pooled cursor needs from the connection proxy that made it (``proxy.PooledConnection``).

    Declared here, not imported, so that the proxy depends on its cursors and never the other way round.
    ``_lock`` is None for a proxy bound to its owner thread.
    """

    _lock: threading.RLock | None

    def _checked_raw(self) -> sqlite3.Connection: ...

    def _note_sql(self, sql: object) -> None: ...


class PooledCursor(sqlite3.Cursor):
    """A cursor on a pooled connection; ``connection`` is the proxy the caller holds.

    The proxy sets both slots right after creating the cursor. sqlite3 reports a cursor the caller
    closed before anything about its connection, so the proxy is only checked while the cursor is open
    (the C method then raises its own "closed cursor" error).
    """

    __slots__ = ("_closed_by_user", "_proxy")
    _proxy: CursorOwner
    _closed_by_user: bool

    @property
    def connection(self) -> CursorOwner:  # type: ignore[override]
        return self._proxy

    def execute(self, sql: str, parameters: Any = (), /) -> PooledCursor:
        proxy = self._proxy
        if not self._closed_by_user:
            proxy._checked_raw()
        proxy._note_sql(sql)
        super().execute(sql, parameters)
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> PooledCursor:
        proxy = self._proxy
        if not self._closed_by_user:
            proxy._checked_raw()
        proxy._note_sql(sql)
        super().executemany(sql, seq_of_parameters)
        return self

    def executescript(self, sql_script: str, /) -> PooledCursor:
        proxy = self._proxy
        if not self._closed_by_user:
            proxy._checked_raw()
        proxy._note_sql(sql_script)
        super().executescript(sql_script)
        return self

    def fetchone(self) -> Any:
        if not self._closed_by_user:
            self._proxy._checked_raw()
        return super().fetchone()

    def fetchmany(self, size: Any = _ARRAYSIZE) -> list[Any]:
        if not self._closed_by_user:
            self._proxy._checked_raw()
        # Without an argument the C method uses the cursor's current arraysize: keep that default.
        return super().fetchmany() if size is _ARRAYSIZE else super().fetchmany(size)

    def fetchall(self) -> list[Any]:
        if not self._closed_by_user:
            self._proxy._checked_raw()
        return super().fetchall()

    def __next__(self) -> Any:
        if not self._closed_by_user:
            self._proxy._checked_raw()
        return super().__next__()

    def close(self) -> None:
        self._proxy._checked_raw()  # sqlite3 refuses to close a cursor of a closed connection
        self._closed_by_user = True
        super().close()


#: The cursor methods a shared proxy's lock serialises.
OPERATIONS = (
    "execute",
    "executemany",
    "executescript",
    "fetchone",
    "fetchmany",
    "fetchall",
    "__next__",
    "close",
)
_proxy_lock = operator.attrgetter("_proxy._lock")
SharedPooledCursor = serialised(PooledCursor, OPERATIONS, _proxy_lock)

_combined: dict[tuple[type[sqlite3.Cursor], bool], type[PooledCursor]] = {}


def pooled_cursor_class(factory: object, *, shared: bool) -> type[PooledCursor] | None:
    """The pooled variant of a cursor ``factory`` (for a proxy ``shared`` between threads or not), or
    None if it cannot be wrapped safely.

    A ``sqlite3.Cursor`` subclass is combined with :class:`PooledCursor` (so ``connection`` and the checks
    come first in the MRO). A factory with its own ``__init__``/``__new__`` receives the raw connection
    and might keep it, and a plain callable can return anything: those are not wrapped, and the caller
    marks the connection dirty so it is never reused.
    """
    if factory is sqlite3.Cursor:
        return SharedPooledCursor if shared else PooledCursor
    if not (isinstance(factory, type) and issubclass(factory, sqlite3.Cursor)):
        return None
    if factory.__init__ is not sqlite3.Cursor.__init__ or factory.__new__ is not sqlite3.Cursor.__new__:
        return None
    combined = _combined.get((factory, shared))
    if combined is None:
        try:
            combined = type(factory.__name__, (PooledCursor, factory), {"__module__": factory.__module__})
        except TypeError:  # incompatible layout (e.g. conflicting __slots__)
            return None
        if shared:
            combined = serialised(combined, OPERATIONS, _proxy_lock)
        _combined[(factory, shared)] = combined  # a racing duplicate is an equivalent class: harmless
    return combined
