"""The connection object ``db_utils.sqlite.connect`` returns: a pooled raw connection behind sqlite3's API.

The proxy owns the caller-visible lifecycle: ``close()`` returns the raw connection to its pool (once),
every later use raises sqlite3's ``ProgrammingError("Cannot operate on a closed database.")``, and the
caller's ``check_same_thread`` is enforced here because the raw connection is shared across threads.

What could outlive a borrower is tracked: cursors and blobs are closed on return (an unfinished ``SELECT``
would otherwise keep a read lock on a pooled connection), the restorable pragmas a borrower sets are
noted so the pool writes their values back (:mod:`db_utils.sqlite.pragmas`), and anything else that
changes the connection in a way a rollback cannot undo marks it *dirty*, with the reason, so the pool
closes it instead of reusing it.

One lock per proxy (reentrant, because row factories, functions and callbacks run inside an operation and
may call back into the connection) makes "check open, then use raw" atomic against ``close()`` from
another thread, so a late operation can never run on a connection already lent to someone else.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any, cast

from db_utils.sqlite import registry
from db_utils.sqlite.cursor import PooledCursor, pooled_cursor_class
from db_utils.sqlite.pool import SQLitePool
from db_utils.sqlite.statements import SqlEffect, analyze

_CLOSED = "Cannot operate on a closed database."
_WRONG_THREAD = (
    "SQLite objects created in a thread can only be used in that same thread. "
    "The object was created in thread id {} and this is thread id {}."
)


_PRUNE_AT = 64


def _closed_error() -> sqlite3.ProgrammingError:
    return sqlite3.ProgrammingError(_CLOSED)


class PooledConnection:
    """Behaves like ``sqlite3.Connection`` for a connection borrowed from a pool.

    ``isinstance(conn, sqlite3.Connection)`` is False (a C connection object cannot be a view onto another
    connection); everything legacy code calls on a connection is here.
    """

    __slots__ = (
        "__weakref__",
        "_changes_base",
        "_children",
        "_dirty",
        "_lock",
        "_owner",
        "_pool",
        "_prune_at",
        "_raw",
        "_row_factory",
        "_text_factory",
        "_touched",
        "_wrote",
    )

    Warning = sqlite3.Warning
    Error = sqlite3.Error
    InterfaceError = sqlite3.InterfaceError
    DatabaseError = sqlite3.DatabaseError
    DataError = sqlite3.DataError
    OperationalError = sqlite3.OperationalError
    IntegrityError = sqlite3.IntegrityError
    InternalError = sqlite3.InternalError
    ProgrammingError = sqlite3.ProgrammingError
    NotSupportedError = sqlite3.NotSupportedError

    def __init__(self, pool: SQLitePool, raw: sqlite3.Connection, *, check_same_thread: bool) -> None:
        self._pool = pool
        self._raw: sqlite3.Connection | None = raw
        self._owner = threading.get_ident() if check_same_thread else None
        self._dirty: str | None = None  # why the connection cannot be reused, once it cannot
        self._touched: set[str] | None = None  # restorable pragmas set during this lease
        self._children: list[weakref.ref[Any]] = []
        self._prune_at = _PRUNE_AT
        self._lock = threading.RLock()
        self._row_factory: Any = None
        self._text_factory: Any = str
        self._changes_base = raw.total_changes  # total_changes counts from *this* borrower's connect()
        self._wrote = False  # ran SQL that writes the file without counting in total_changes (DDL...)

    # -- checks, in sqlite3's order: thread first, then open ---------------------------------------------
    def _check_thread(self) -> None:
        owner = self._owner
        if owner is not None and owner != threading.get_ident():
            raise sqlite3.ProgrammingError(_WRONG_THREAD.format(owner, threading.get_ident()))

    def _checked_raw(self) -> sqlite3.Connection:
        """The raw connection, for an operation sqlite3 guards with both the thread and the closed check."""
        self._check_thread()
        raw = self._raw
        if raw is None:
            raise _closed_error()
        return raw

    def _open_raw(self) -> sqlite3.Connection:
        """The raw connection, for what sqlite3 allows from any thread (``in_transaction``, ...)."""
        raw = self._raw
        if raw is None:
            raise _closed_error()
        return raw

    def _note_sql(self, sql: object) -> None:
        """Called with the lock held, before ``sql`` runs: note what it will leave behind."""
        if not isinstance(sql, str):
            return
        # Plain attribute tests, not IntFlag arithmetic (a Python-level call each): this runs per execute.
        analysis = analyze(sql)
        if analysis.writes:
            self._wrote = True
        if analysis.reason:  # set exactly when the SQL makes the connection dirty
            self._dirty = self._dirty or analysis.reason
            if analysis.effect & SqlEffect.JOURNAL_MODE:
                self._pool.caller_sets_journal_mode()
        raw = self._raw  # None for a closed cursor of a closed proxy: sqlite3 then raises its own error
        if analysis.pragmas and self._dirty is None and raw is not None:
            changed = self._pool.pragmas_to_restore(raw, analysis.pragmas)
            if changed is None:
                self._dirty = "a pragma's value could not be read before it was changed"
            elif changed:
                if self._touched is None:
                    self._touched = set()
                self._touched.update(changed)

    def _track(self, child: Any) -> None:
        # Weak references: a cursor the caller dropped must be freed (and its statement reset) right away.
        # A plain list is several times cheaper than a WeakSet on this hot path; dead entries are pruned
        # once the list grows, so a long-lived connection does not accumulate them.
        children = self._children
        if len(children) >= self._prune_at:
            children[:] = [ref for ref in children if ref() is not None]
            self._prune_at = max(_PRUNE_AT, 2 * len(children))  # amortised O(1) even if all are alive
        children.append(weakref.ref(child))

    # -- cursors and SQL ----------------------------------------------------------------------------------
    def cursor(self, factory: Any = sqlite3.Cursor) -> Any:
        with self._lock:
            return self._new_cursor(self._checked_raw(), factory)

    def _new_cursor(self, raw: sqlite3.Connection, factory: Any) -> Any:
        cls = PooledCursor if factory is sqlite3.Cursor else pooled_cursor_class(factory)
        if cls is None:
            # The factory sees the raw connection and may keep it: never reuse.
            self._dirty = self._dirty or "a cursor factory received the raw connection"
            cursor = raw.cursor(factory)
        else:
            cursor = raw.cursor(cls)
            cursor._proxy = self
        self._track(cursor)
        return cursor

    def execute(self, sql: str, parameters: Any = (), /) -> PooledCursor:
        with self._lock:
            raw = self._checked_raw()
            self._note_sql(sql)
            cursor: PooledCursor = self._new_cursor(raw, sqlite3.Cursor)
            sqlite3.Cursor.execute(cursor, sql, parameters)
            return cursor

    def executemany(self, sql: str, parameters: Any, /) -> PooledCursor:
        with self._lock:
            raw = self._checked_raw()
            self._note_sql(sql)
            cursor: PooledCursor = self._new_cursor(raw, sqlite3.Cursor)
            sqlite3.Cursor.executemany(cursor, sql, parameters)
            return cursor

    def executescript(self, sql_script: str, /) -> PooledCursor:
        with self._lock:
            raw = self._checked_raw()
            self._note_sql(sql_script)
            cursor: PooledCursor = self._new_cursor(raw, sqlite3.Cursor)
            sqlite3.Cursor.executescript(cursor, sql_script)
            return cursor

    # -- transactions and lifecycle -----------------------------------------------------------------------
    def commit(self) -> None:
        with self._lock:
            self._checked_raw().commit()

    def rollback(self) -> None:
        with self._lock:
            self._checked_raw().rollback()

    def __enter__(self) -> PooledConnection:
        self._open_raw()  # sqlite3's __enter__ only checks that the connection is open
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> bool:
        # Commit on success, rollback on error, never close: the raw connection's __exit__ is exactly that.
        with self._lock:
            return bool(self._checked_raw().__exit__(exc_type, exc_value, traceback))

    def close(self) -> None:
        """Return the connection to its pool. Idempotent, like sqlite3's close()."""
        self._check_thread()
        with self._lock:
            raw, self._raw = self._raw, None
        if raw is not None:
            self._release(raw)

    def _release(self, raw: sqlite3.Connection) -> str:
        """Hand ``raw`` back to the pool; what the pool did with it, in words."""
        children, self._children = self._children, []
        for ref in children:
            child = ref()
            if child is not None:
                _close_child(child)
        try:
            wrote = self._wrote or raw.total_changes != self._changes_base
        except sqlite3.Error:
            wrote = True  # closed behind our back: the pool closes it; the next return checkpoints
        return self._pool.checkin(
            raw,
            dirty=self._dirty,
            current_generation=registry.current_generation(),
            touched=self._touched or frozenset(),
            wrote=wrote,
        )

    def __del__(self) -> None:
        raw = getattr(self, "_raw", None)
        if raw is None:
            return
        self._raw = None
        try:
            outcome = self._release(raw)  # first, so a warnings filter set to "error" cannot leak it
            warnings.warn(
                f"pooled SQLite connection to {self._pool.target.label!r} was garbage-collected without "
                f"close(); {outcome}",
                ResourceWarning,
                stacklevel=2,
            )
        except Exception:  # noqa: S110 - a finalizer must not raise (e.g. during interpreter shutdown)
            pass

    def __repr__(self) -> str:
        state = "closed" if self._raw is None else "open"
        return f"<db_utils.sqlite.PooledConnection {self._pool.target.label!r} ({state})>"

    # -- attributes ---------------------------------------------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        return self._open_raw().in_transaction

    @property
    def total_changes(self) -> int:
        return self._open_raw().total_changes - self._changes_base

    @property
    def isolation_level(self) -> str | None:
        return self._open_raw().isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._check_thread()
        with self._lock:
            raw = self._raw
            if raw is not None:  # sqlite3 accepts the assignment on a closed connection and ignores it
                raw.isolation_level = value  # type: ignore[assignment] # validates, and commits an open transaction for None

    @property
    def row_factory(self) -> Any:
        return self._row_factory

    @row_factory.setter
    def row_factory(self, value: Any) -> None:
        raw = self._raw
        if raw is not None:
            raw.row_factory = value  # cursors copy it at creation, exactly as with sqlite3
        self._row_factory = value

    @property
    def text_factory(self) -> Any:
        return self._text_factory

    @text_factory.setter
    def text_factory(self, value: Any) -> None:
        raw = self._raw
        if raw is not None:
            raw.text_factory = value
        self._text_factory = value

    if sys.version_info >= (3, 12):

        @property
        def autocommit(self) -> Any:
            return self._open_raw().autocommit

        @autocommit.setter
        def autocommit(self, value: Any) -> None:
            with self._lock:
                raw = self._checked_raw()
                raw.autocommit = value
                # Changing it commits/opens transactions: do not try to restore it.
                self._dirty = self._dirty or "autocommit was changed"

    # -- methods that change the connection beyond a rollback: forward and mark dirty --------------------
    def _forward_dirty(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with self._lock:
            raw = self._checked_raw()
            # Before the call: even a failed registration may have changed something.
            self._dirty = self._dirty or f"{name}() was called"
            return getattr(raw, name)(*args, **kwargs)

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._forward_dirty("create_function", args, kwargs)

    def create_aggregate(self, *args: Any, **kwargs: Any) -> None:
        self._forward_dirty("create_aggregate", args, kwargs)

    def create_collation(self, *args: Any, **kwargs: Any) -> None:
        self._forward_dirty("create_collation", args, kwargs)

    def create_window_function(self, *args: Any, **kwargs: Any) -> None:
        self._forward_dirty("create_window_function", args, kwargs)

    def set_authorizer(self, *args: Any, **kwargs: Any) -> None:
        self._forward_dirty("set_authorizer", args, kwargs)

    def set_progress_handler(self, *args: Any, **kwargs: Any) -> None:
        self._forward_dirty("set_progress_handler", args, kwargs)

    def set_trace_callback(self, *args: Any, **kwargs: Any) -> None:
        self._forward_dirty("set_trace_callback", args, kwargs)

    def enable_load_extension(self, *args: Any, **kwargs: Any) -> None:
        self._forward_dirty("enable_load_extension", args, kwargs)

    def load_extension(self, *args: Any, **kwargs: Any) -> None:
        self._forward_dirty("load_extension", args, kwargs)

    def setlimit(self, *args: Any, **kwargs: Any) -> int:
        return int(self._forward_dirty("setlimit", args, kwargs))

    def deserialize(self, *args: Any, **kwargs: Any) -> None:
        self._forward_dirty("deserialize", args, kwargs)

    # -- methods that leave the connection clean ----------------------------------------------------------
    def _forward_clean(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with self._lock:
            return getattr(self._checked_raw(), name)(*args, **kwargs)

    def getlimit(self, *args: Any, **kwargs: Any) -> int:
        return int(self._forward_clean("getlimit", args, kwargs))

    def serialize(self, *args: Any, **kwargs: Any) -> bytes:
        return bytes(self._forward_clean("serialize", args, kwargs))

    def interrupt(self) -> None:
        # No lock: interrupt() exists to be called from another thread *while* a query holds the lock.
        self._open_raw().interrupt()

    def blobopen(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            blob = self._forward_clean("blobopen", args, kwargs)
            self._track(blob)  # an open blob holds a transaction: closed on return like cursors
            return blob

    def backup(self, target: Any, *args: Any, **kwargs: Any) -> None:
        """Back up into ``target``, a sqlite3 connection or another pooled proxy."""
        with self._lock:
            raw = self._checked_raw()
            if isinstance(target, PooledConnection):
                target = target._open_raw()
            raw.backup(target, *args, **kwargs)

    def iterdump(self, **kwargs: Any) -> Iterator[str]:
        """sqlite3's own dump, run through this proxy so its cursors are tracked and closed on return."""
        self._checked_raw()  # sqlite3 checks eagerly, not at the first next()
        return _iterdump(self, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names defined on sqlite3.Connection in a newer Python and not above. Methods
        # are forwarded but, being unknown, assumed to change the connection.
        attribute = getattr(sqlite3.Connection, name, None) if not name.startswith("_") else None
        if attribute is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        if callable(attribute):
            return lambda *args, **kwargs: self._forward_dirty(name, args, kwargs)
        return getattr(self._open_raw(), name)


def _close_child(child: Any) -> None:
    """Close a cursor or blob at the C level (bypassing PooledCursor's caller-facing checks)."""
    try:
        if isinstance(child, sqlite3.Cursor):
            sqlite3.Cursor.close(child)
        else:
            child.close()
    except sqlite3.Error:
        pass  # already closed with its connection: nothing held


def _load_iterdump() -> Callable[..., Iterator[str]]:
    try:
        from sqlite3.dump import _iterdump as dump  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - every CPython since 2.6 has it
        return lambda connection, **kwargs: iter(connection._checked_raw().iterdump(**kwargs))
    return cast(Callable[..., Iterator[str]], dump)


_iterdump = _load_iterdump()
