"""Cursors handed out by pooled SQLite connections.

A plain ``sqlite3.Cursor`` would expose the raw pooled connection through ``cursor.connection`` (and the
row-factory callbacks that receive the cursor), letting legacy code close it or change it behind the
proxy's back, and it would keep working after the proxy is closed, on a connection by then lent to
someone else. :class:`PooledCursor` subclasses the C cursor, so every method keeps C speed and
``isinstance(cur, sqlite3.Cursor)`` holds, but ``connection`` returns the proxy and every operation first
applies the proxy's checks (caller's thread, proxy still open), in sqlite3's order.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from typing import Any, Protocol

_ARRAYSIZE: Any = object()  # "size not given" for fetchmany


class CursorOwner(Protocol):
    """What a pooled cursor needs from the connection proxy that made it (``proxy.PooledConnection``).

    Declared here, not imported, so that the proxy depends on its cursors and never the other way round.
    """

    _lock: threading.RLock

    def _checked_raw(self) -> sqlite3.Connection: ...

    def _note_sql(self, sql: object) -> None: ...


class PooledCursor(sqlite3.Cursor):
    """A cursor on a pooled connection; ``connection`` is the proxy the caller holds."""

    _proxy: CursorOwner
    _closed_by_user: bool = False

    @property
    def connection(self) -> CursorOwner:  # type: ignore[override]
        return self._proxy

    def _guard(self) -> None:
        # sqlite3 reports a cursor the caller closed before anything about its connection, so only check
        # the proxy while the cursor is open (the C method then raises its own "closed cursor" error).
        if not self._closed_by_user:
            self._proxy._checked_raw()

    def execute(self, sql: str, parameters: Any = (), /) -> PooledCursor:
        proxy = self._proxy
        with proxy._lock:
            self._guard()
            proxy._note_sql(sql)
            super().execute(sql, parameters)
            return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> PooledCursor:
        proxy = self._proxy
        with proxy._lock:
            self._guard()
            proxy._note_sql(sql)
            super().executemany(sql, seq_of_parameters)
            return self

    def executescript(self, sql_script: str, /) -> PooledCursor:
        proxy = self._proxy
        with proxy._lock:
            self._guard()
            proxy._note_sql(sql_script)
            super().executescript(sql_script)
            return self

    def fetchone(self) -> Any:
        with self._proxy._lock:
            self._guard()
            return super().fetchone()

    def fetchmany(self, size: Any = _ARRAYSIZE) -> list[Any]:
        with self._proxy._lock:
            self._guard()
            # Without an argument the C method uses the cursor's current arraysize: keep that default.
            return super().fetchmany() if size is _ARRAYSIZE else super().fetchmany(size)

    def fetchall(self) -> list[Any]:
        with self._proxy._lock:
            self._guard()
            return super().fetchall()

    def __next__(self) -> Any:
        with self._proxy._lock:
            self._guard()
            return super().__next__()

    def close(self) -> None:
        proxy = self._proxy
        with proxy._lock:
            proxy._checked_raw()  # sqlite3 refuses to close a cursor of a closed connection
            self._closed_by_user = True
            super().close()


_combined: dict[type[sqlite3.Cursor], type[PooledCursor]] = {}


def pooled_cursor_class(factory: object) -> type[PooledCursor] | None:
    """The pooled variant of a cursor ``factory``, or None if it cannot be wrapped safely.

    A ``sqlite3.Cursor`` subclass is combined with :class:`PooledCursor` (so ``connection`` and the checks
    come first in the MRO). A factory with its own ``__init__``/``__new__`` receives the raw connection
    and might keep it, and a plain callable can return anything: those are not wrapped, and the caller
    marks the connection dirty so it is never reused.
    """
    if factory is sqlite3.Cursor:
        return PooledCursor
    if not (isinstance(factory, type) and issubclass(factory, sqlite3.Cursor)):
        return None
    if factory.__init__ is not sqlite3.Cursor.__init__ or factory.__new__ is not sqlite3.Cursor.__new__:
        return None
    combined = _combined.get(factory)
    if combined is None:
        try:
            combined = type(factory.__name__, (PooledCursor, factory), {"__module__": factory.__module__})
        except TypeError:  # incompatible layout (e.g. conflicting __slots__)
            return None
        _combined[factory] = combined  # a racing duplicate is an equivalent class: harmless
    return combined
