"""The connection object ``db_utils.sqlite.connect`` returns: a pooled raw connection behind sqlite3's API.

The proxy owns the caller-visible lifecycle: ``close()`` returns the raw connection to its pool (once),
every later use raises sqlite3's ``ProgrammingError("Cannot operate on a closed database.")``, and the
caller's ``check_same_thread`` is enforced here because the raw connection is shared across threads.

What could outlive a borrower is tracked: cursors and blobs are closed on return (an unfinished ``SELECT``
would otherwise keep a read lock on a pooled connection), the restorable pragmas a borrower sets are
noted so the pool writes their values back (:mod:`db_utils.sqlite.pragmas`), and anything else that
changes the connection in a way a rollback cannot undo marks it *dirty*, with the reason, so the pool
closes it instead of reusing it. ``PRAGMA journal_mode = <mode>`` is the one such statement checked
against the connection when it runs: setting the mode the database already has leaves it clean.

"Check open, then use raw" must be atomic against ``close()``, so that a late operation can never run on
a connection already lent to someone else. A proxy bound to its owner thread (sqlite3's default) gets
that from its thread check; a proxy shared between threads (``check_same_thread=False``) is the
lock-serialised :data:`SharedPooledConnection` (see :mod:`db_utils.sqlite.shared`). :func:`lend` picks.

This is the per-call path of every migrated ``connect()``: its methods avoid what costs most here
(``with`` blocks, helper calls, a ``__getattr__`` hook, which would slow down every attribute access
of the proxy), and bench/callgrind_sqlite.py counts what is left.
"""

from __future__ import annotations

import operator
import sqlite3
import sys
import threading
import warnings
import weakref
from _thread import get_ident
from collections.abc import Callable, Iterator
from typing import Any, cast

from db_utils.sqlite import pragmas
from db_utils.sqlite.cursor import PooledCursor, SharedPooledCursor, pooled_cursor_class
from db_utils.sqlite.pool import SQLitePool
from db_utils.sqlite.shared import serialised
from db_utils.sqlite.statements import NOTHING, SqlAnalysis, SqlEffect, analyze

_CLOSED = "Cannot operate on a closed database."
_WRONG_THREAD = (
    "SQLite objects created in a thread can only be used in that same thread. "
    "The object was created in thread id {} and this is thread id {}."
)


_PRUNE_AT = 64
_execute = sqlite3.Cursor.execute
_executemany = sqlite3.Cursor.executemany
_executescript = sqlite3.Cursor.executescript


def _closed_error() -> sqlite3.ProgrammingError:
    return sqlite3.ProgrammingError(_CLOSED)


def _wrong_thread_error(owner: int) -> sqlite3.ProgrammingError:
    return sqlite3.ProgrammingError(_WRONG_THREAD.format(owner, get_ident()))


class PooledConnection:
    """Behaves like ``sqlite3.Connection`` for a connection borrowed from a pool.

    Its type is not ``sqlite3.Connection`` (a C connection object cannot be a view onto another
    connection); everything legacy code calls on a connection is here. ``isinstance(conn,
    sqlite3.Connection)`` is true all the same, through ``__class__`` (as a ``Mock(spec=...)`` passes):
    Python code that checks before calling methods (pandas' ``read_sql``/``to_sql``, which warns on every
    call about any other connection) takes the sqlite3 path; C code checks the real type and refuses the
    proxy, as it always did.
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

    #: The cursor class ``execute`` and ``cursor()`` hand out (the shared variant's are serialised).
    _plain_cursor: type[PooledCursor] = PooledCursor

    @property  # type: ignore[misc]
    def __class__(self) -> type[sqlite3.Connection]:  # type: ignore[override]
        return sqlite3.Connection

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

    def __init__(self, pool: SQLitePool, raw: sqlite3.Connection, owner: int | None) -> None:
        """``owner``: the thread id ``check_same_thread`` binds the proxy to, None for a shared one."""
        self._pool = pool
        self._raw: sqlite3.Connection | None = raw
        self._owner = owner
        self._lock: threading.RLock | None = None
        self._dirty: str | None = None  # why the connection cannot be reused, once it cannot
        self._touched: set[str] | None = None  # restorable pragmas set during this lease
        self._children: list[weakref.ref[Any]] = []
        self._prune_at = _PRUNE_AT
        self._row_factory: Any = None
        self._text_factory: Any = str
        self._changes_base = raw.total_changes  # total_changes counts from *this* borrower's connect()
        self._wrote = False  # ran SQL that writes the file without counting in total_changes (DDL...)

    # -- checks, in sqlite3's order: thread first, then open ---------------------------------------------
    def _check_thread(self) -> None:
        owner = self._owner
        if owner is not None and owner != get_ident():
            raise _wrong_thread_error(owner)

    def _checked_raw(self) -> sqlite3.Connection:
        """The raw connection, for an operation sqlite3 guards with both the thread and the closed check."""
        owner = self._owner
        if owner is not None and owner != get_ident():
            raise _wrong_thread_error(owner)
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
        """Called before ``sql`` runs: note what it will leave behind."""
        if isinstance(sql, str):
            analysis = analyze(sql)
            if analysis is not NOTHING:  # most SQL leaves nothing: one identity test
                self._note_analysis(analysis)

    def _note_analysis(self, analysis: SqlAnalysis) -> None:
        # Plain attribute tests, not IntFlag arithmetic (a Python-level call each).
        if analysis.writes:
            self._wrote = True
        raw = self._raw  # None for a closed cursor of a closed proxy: sqlite3 then raises its own error
        if analysis.reason and not (  # set exactly when the SQL makes the connection dirty
            analysis.journal_modes
            and self._dirty is None
            and raw is not None
            and self._keeps_journal_mode(raw, analysis.journal_modes)
        ):
            self._dirty = self._dirty or analysis.reason
            if analysis.effect & SqlEffect.JOURNAL_MODE:
                self._pool.caller_sets_journal_mode()
        if analysis.pragmas and self._dirty is None and raw is not None:
            changed = self._pool.pragmas_to_restore(raw, analysis.pragmas)
            if changed is None:
                self._dirty = "a pragma's value could not be read before it was changed"
            elif changed:
                if self._touched is None:
                    self._touched = set()
                self._touched.update(changed)

    def _keeps_journal_mode(self, raw: sqlite3.Connection, modes: tuple[str, ...]) -> bool:
        """Before SQL whose only lasting effect is setting the journal mode to ``modes`` runs: true if
        each is the mode ``raw`` has now, so the SQL changes nothing and the connection stays clean.

        Read here rather than on return, like a restorable pragma's noted value, because afterwards
        the mode no longer tells whether the SQL changed it; and read every time, since the mode is the
        file's (another process may switch it). A mode that cannot be read counts as a change. The
        caller still chose the mode, so the pool is told it must not switch this database any more
        (without closing its idle connections, as a change of mode needs).
        """
        try:
            current = pragmas.journal_mode(raw)
        except sqlite3.Error:
            return False
        if any(mode != current for mode in modes):
            return False
        self._pool.caller_keeps_journal_mode()
        return True

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
        return self._new_cursor(self._checked_raw(), factory)

    def _new_cursor(self, raw: sqlite3.Connection, factory: Any) -> Any:
        if factory is sqlite3.Cursor:
            cls: type[PooledCursor] | None = self._plain_cursor
        else:
            cls = pooled_cursor_class(factory, shared=self._lock is not None)
        if cls is None:
            # The factory sees the raw connection and may keep it: never reuse.
            self._dirty = self._dirty or "a cursor factory received the raw connection"
            cursor = raw.cursor(factory)
        else:
            cursor = raw.cursor(cls)
            cursor._proxy = self
            cursor._closed_by_user = False
        self._track(cursor)
        return cursor

    def execute(self, sql: str, parameters: Any = (), /) -> PooledCursor:
        raw = self._checked_raw()
        self._note_sql(sql)
        cursor: PooledCursor = self._new_cursor(raw, sqlite3.Cursor)
        _execute(cursor, sql, parameters)
        return cursor

    def executemany(self, sql: str, parameters: Any, /) -> PooledCursor:
        raw = self._checked_raw()
        self._note_sql(sql)
        cursor: PooledCursor = self._new_cursor(raw, sqlite3.Cursor)
        _executemany(cursor, sql, parameters)
        return cursor

    def executescript(self, sql_script: str, /) -> PooledCursor:
        raw = self._checked_raw()
        self._note_sql(sql_script)
        cursor: PooledCursor = self._new_cursor(raw, sqlite3.Cursor)
        _executescript(cursor, sql_script)
        return cursor

    # -- transactions and lifecycle -----------------------------------------------------------------------
    def commit(self) -> None:
        self._checked_raw().commit()

    def rollback(self) -> None:
        self._checked_raw().rollback()

    def __enter__(self) -> PooledConnection:
        self._open_raw()  # sqlite3's __enter__ only checks that the connection is open
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> bool:
        # Commit on success, rollback on error, never close: the raw connection's __exit__ is exactly that.
        return bool(self._checked_raw().__exit__(exc_type, exc_value, traceback))

    def close(self) -> None:
        """Return the connection to its pool. Idempotent, like sqlite3's close()."""
        owner = self._owner
        if owner is not None and owner != get_ident():
            raise _wrong_thread_error(owner)
        raw = self._raw
        if raw is not None:
            self._raw = None
            self._release(raw)

    def _release(self, raw: sqlite3.Connection) -> str:
        """Hand ``raw`` back to the pool; what the pool did with it, in words."""
        children = self._children
        if children:
            self._children = []
            for ref in children:
                child = ref()
                if child is not None:
                    _close_child(child)
        try:
            wrote = self._wrote or raw.total_changes != self._changes_base
        except sqlite3.Error:
            wrote = True  # closed behind our back: the pool closes it; the next return checkpoints
        return self._pool.checkin(raw, self._dirty, self._touched, wrote)

    def __del__(self) -> None:
        try:
            raw = self._raw
        except AttributeError:  # __init__ did not get that far
            return
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
        except ResourceWarning:
            # A filter made the warning an error (``-W error::ResourceWarning``, how test runs find
            # leaks). The connection is back already; raising lets CPython report it the way it reports
            # any exception in __del__ ("Exception ignored in: ...", through sys.unraisablehook) instead
            # of the leak going unseen.
            raise
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
            raw = self._checked_raw()
            raw.autocommit = value
            # Changing it commits/opens transactions: do not try to restore it.
            self._dirty = self._dirty or "autocommit was changed"

    # -- methods that change the connection beyond a rollback: forward and mark dirty --------------------
    def _forward_dirty(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
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
        return getattr(self._checked_raw(), name)(*args, **kwargs)

    def getlimit(self, *args: Any, **kwargs: Any) -> int:
        return int(self._forward_clean("getlimit", args, kwargs))

    def serialize(self, *args: Any, **kwargs: Any) -> bytes:
        return bytes(self._forward_clean("serialize", args, kwargs))

    def interrupt(self) -> None:
        # Never serialised: interrupt() exists to be called from another thread *while* a query runs.
        self._open_raw().interrupt()

    def blobopen(self, *args: Any, **kwargs: Any) -> Any:
        blob = self._forward_clean("blobopen", args, kwargs)
        self._track(blob)  # an open blob holds a transaction: closed on return like cursors
        if not kwargs.get("readonly"):
            # A blob's writes are not in total_changes: without this the pool would not checkpoint
            # them into the main file when the last borrowed connection comes back (see SQLitePool.checkin).
            self._wrote = True
        return blob

    def backup(self, target: Any, *args: Any, **kwargs: Any) -> None:
        """Back up into ``target``, a sqlite3 connection or another pooled proxy."""
        raw = self._checked_raw()
        if isinstance(target, PooledConnection):
            target_raw = target._open_raw()
            target._wrote = True  # the pages it receives are not in its total_changes either
            target = target_raw
        raw.backup(target, *args, **kwargs)

    def iterdump(self, **kwargs: Any) -> Iterator[str]:
        """sqlite3's own dump, run through this proxy so its cursors are tracked and closed on return."""
        self._checked_raw()  # sqlite3 checks eagerly, not at the first next()
        return _iterdump(self, **kwargs)


def _forward_newer_methods(cls: type[PooledConnection]) -> None:
    """Forward what a newer Python's ``sqlite3.Connection`` has and the proxy does not define.

    Set on the class once, rather than through ``__getattr__``: a class with that hook pays for it on
    every attribute access, including the proxy's own. Methods are forwarded but, being unknown, assumed
    to change the connection; other attributes are read from the raw connection.
    """
    for name in dir(sqlite3.Connection):
        if name.startswith("_") or hasattr(cls, name):
            continue
        if callable(getattr(sqlite3.Connection, name)):

            def forward(self: PooledConnection, *args: Any, __name: str = name, **kwargs: Any) -> Any:
                return self._forward_dirty(__name, args, kwargs)

            forward.__name__ = forward.__qualname__ = name
            setattr(cls, name, forward)
        else:
            setattr(cls, name, property(_reader(name)))


def _reader(name: str) -> Callable[[PooledConnection], Any]:
    return lambda self: getattr(self._open_raw(), name)


_forward_newer_methods(PooledConnection)

#: What a shared proxy's lock serialises: every method and setter that uses the raw connection after
#: checking it is open (``close()`` included, so it waits for an operation in progress), except
#: ``interrupt()``, whose purpose is to be called while a query runs.
OPERATIONS = (
    "cursor",
    "execute",
    "executemany",
    "executescript",
    "commit",
    "rollback",
    "__exit__",
    "close",
    "isolation_level",
    *(("autocommit",) if sys.version_info >= (3, 12) else ()),
    "_forward_dirty",
    "_forward_clean",
    "blobopen",
    "backup",
)
SharedPooledConnection = serialised(PooledConnection, OPERATIONS, operator.attrgetter("_lock"))
SharedPooledConnection._plain_cursor = SharedPooledCursor


def lend(pool: SQLitePool, raw: sqlite3.Connection, check_same_thread: object) -> PooledConnection:
    """The proxy a ``connect()`` call returns for ``raw``, bound to the calling thread unless
    ``check_same_thread`` is false (then serialised by a lock of its own)."""
    if check_same_thread:
        return PooledConnection(pool, raw, get_ident())
    proxy = SharedPooledConnection(pool, raw, None)
    proxy._lock = threading.RLock()
    return proxy


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
