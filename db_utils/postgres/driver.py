"""psycopg2 connections that remember what their borrowers did to the session.

The pool creates every connection through :class:`TrackedConnection` (psycopg2's documented
``connection_factory`` hook), so the real driver object stays a real ``psycopg2.extensions.connection``:
``isinstance`` checks, ``psycopg2.extras.execute_values`` and friends keep working, and every cursor,
whichever ``cursor_factory`` the caller picks (``RealDictCursor``, ``DictCursor``...), is a subclass that
classifies each statement on its way to the server (see :mod:`db_utils.postgres.statements`). The reset on
return then knows, without a round trip, whether a rollback is enough.

It also keeps a weak registry of live connections so that a forked child can make the sockets it
inherited harmless (:func:`neutralize_inherited_connections`).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions as pgext

from db_utils.postgres.statements import (
    CLEAN,
    CLEAN_FACTS,
    SESSION_STATE,
    classify_query,
    statement_facts,
    statement_facts_cache,
)

_UUID_OID = 2950
_UUID_ARRAY_OID = 2951

_live: weakref.WeakSet[TrackedConnection] = weakref.WeakSet()
# WeakSet is not thread-safe for concurrent add/iterate; connects happen on many threads.
_live_lock = threading.Lock()


#: Called with a database name before a statement that needs that database free of other sessions
#: (``DROP DATABASE``...; see :func:`~db_utils.postgres.statements.database_ddl_target`). The registry
#: installs the hook that closes its pools' idle connections to that database.
before_database_ddl: Callable[[str], object] | None = None


#: psycopg2's own ``cursor.connection`` (the real connection), read without the tracking classes'
#: property: what the pool's own code uses, so only a borrower's read counts as exposing the connection.
real_connection_of: Callable[[Any], Any] = pgext.cursor.__dict__["connection"].__get__


class _TrackingCursorMixin:
    """Marks the connection's ``session_effect`` before a statement runs (conservative if it then fails)."""

    __slots__ = ()  # the tracking classes get their instance layout from tracked_cursor_class

    #: False for a class whose construction may hand the real connection to a user's code (see
    #: :func:`tracked_cursor_class`); a pooled handle then treats making such a cursor as exposing it.
    poolshift_trusted = True

    @property
    def connection(self) -> TrackedConnection:
        """psycopg2's ``cursor.connection``. Reached through a pooled handle's cursor, the real connection
        is exposed: its return to the pool reads back everything a borrower could change on it (see
        ``proxy.PooledConnection.expose``)."""
        handle = getattr(self, "poolshift_lease", None)
        if handle is not None:
            handle.expose()
        connection: TrackedConnection = real_connection_of(self)
        return connection

    def execute(self, query: Any, vars: Any = None) -> Any:
        # Optimisation: the everyday statement is a clean str seen before: one dict read.
        if (statement_facts_cache.get(query) if type(query) is str else None) is not CLEAN_FACTS:
            _note_statement(real_connection_of(self), query)
        return super().execute(query, vars)  # type: ignore[misc]

    def executemany(self, query: Any, vars_list: Any) -> Any:
        connection = real_connection_of(self)
        effect = classify_query(query, connection)
        connection.session_effect = max(connection.session_effect, effect)
        return super().executemany(query, vars_list)  # type: ignore[misc]

    def copy_expert(self, sql: Any, file: Any, size: int = 8192) -> Any:
        # COPY (SELECT ...) TO STDOUT runs a query like execute() does.
        _note_statement(real_connection_of(self), sql)
        return super().copy_expert(sql, file, size)  # type: ignore[misc]

    def callproc(self, procname: Any, parameters: Any = None) -> Any:
        # A server function can change anything (set_config, temp tables): always reset the session.
        connection = real_connection_of(self)
        connection.session_effect = max(connection.session_effect, SESSION_STATE)
        return super().callproc(procname, parameters)  # type: ignore[misc]


def _note_statement(connection: TrackedConnection, query: Any) -> None:
    """What a statement does to the session (``session_effect``), and the DDL hook for a database it
    needs free (see :data:`before_database_ddl`)."""
    facts = statement_facts_cache.get(query) if type(query) is str else None
    effect, target = facts if facts is not None else statement_facts(query, connection)
    if effect:  # CLEAN (0) cannot raise the maximum, skip the read-modify-write
        connection.session_effect = max(connection.session_effect, effect)
    if target is not None:
        hook = before_database_ddl
        if hook is not None:
            hook(target)


_plain_execute = pgext.cursor.execute


def _execute_on_plain_cursor(self: Any, query: Any, vars: Any = None) -> Any:
    """``_TrackingCursorMixin.execute`` for psycopg2's own cursor class: its C ``execute`` called
    directly instead of through ``super()`` (which builds a proxy object on every statement)."""
    if (statement_facts_cache.get(query) if type(query) is str else None) is not CLEAN_FACTS:
        _note_statement(real_connection_of(self), query)
    return _plain_execute(self, query, vars)


_tracked_classes: dict[type, type] = {}
_tracked_classes_lock = threading.Lock()


def tracked_cursor_class(factory: type) -> type:
    """The tracking subclass of a cursor class, built once per class and cached."""
    tracked = _tracked_classes.get(factory)
    if tracked is None:
        with _tracked_classes_lock:  # two threads may race to build it; keep one
            tracked = _tracked_classes.get(factory)
            if tracked is None:
                own: dict[str, Any] = {"execute": _execute_on_plain_cursor} if factory is pgext.cursor else {}
                if not _constructs_in_psycopg2_only(factory):
                    own["poolshift_trusted"] = False
                if not factory.__dictoffset__:
                    # The pooled handle's reference (see proxy.PooledConnection.cursor) in a slot: no
                    # instance dict made per cursor; other attributes still get one, as before.
                    own["__slots__"] = ("__dict__", "poolshift_lease")
                tracked = type(f"Tracked{factory.__name__}", (_TrackingCursorMixin, factory), own)
                _tracked_classes[factory] = tracked
    return tracked


def _constructs_in_psycopg2_only(factory: type) -> bool:
    """Whether making a ``factory`` cursor runs only psycopg2's code: a class of the application that
    defines ``__init__`` or ``__new__`` receives the real connection as an argument."""
    return all(
        klass.__module__.partition(".")[0] == "psycopg2"
        or not ({"__init__", "__new__"} & klass.__dict__.keys())
        for klass in factory.__mro__[:-1]  # object's own constructors last
    )


_TRACKED_CURSOR = tracked_cursor_class(pgext.cursor)


class TrackedConnection(pgext.connection):  # type: ignore[misc]
    """A real psycopg2 connection whose cursors report session-state changes in ``session_effect``."""

    #: True while the pool is still opening the connection (see :class:`_PoolOpeningFront`).
    poolshift_opening = False
    #: False for a class with a user's ``connection_factory`` in it (see :func:`tracked_connection_class`):
    #: its methods run with the real connection as ``self``, so the pool counts it as always exposed.
    poolshift_trusted = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session_effect = CLEAN
        with _live_lock:
            _live.add(self)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs and self.cursor_factory is None:
            # Optimisation: the everyday ``conn.cursor()`` is exactly the general path below with the
            # plain cursor class, resolved once at import instead of on every call (PLAIN_CURSOR_CLASS).
            return pgext.connection.cursor(self, cursor_factory=_TRACKED_CURSOR)
        factory = kwargs.get("cursor_factory") or self.cursor_factory or pgext.cursor
        withhold = kwargs.get("withhold", args[3] if len(args) > 3 else False)
        if withhold:
            # A WITH HOLD cursor outlives the transaction: only DISCARD ALL closes it.
            self.session_effect = max(self.session_effect, SESSION_STATE)
        if isinstance(factory, type) and issubclass(factory, pgext.cursor):
            kwargs["cursor_factory"] = tracked_cursor_class(factory)
        else:
            # A factory we cannot subclass: statements go untracked, so assume the worst.
            self.session_effect = max(self.session_effect, SESSION_STATE)
        return super().cursor(*args, **kwargs)


#: Connection class -> the cursor class its ``cursor()`` makes when called without arguments and no
#: ``cursor_factory`` is set: what the pooled handle makes directly, skipping that ``cursor()`` frame. Only
#: classes whose ``cursor()`` is known (a user's ``connection_factory`` may override it) are listed.
PLAIN_CURSOR_CLASS: dict[type, type] = {TrackedConnection: _TRACKED_CURSOR}


class _PoolOpeningFront:
    """First in the MRO of the classes :func:`tracked_connection_class` builds for ``connect()``'s pools.

    While the pool opens a connection (``poolshift_opening``, cleared by the pool's connect listener), the
    dialect runs its own queries: they must get a plain tuple cursor, not the user's factory's
    (``LoggingConnection.cursor()`` refuses to work before ``initialize()``; a ``RealDictCursor`` row has
    no ``row[0]``). Afterwards every call goes to the user's factory, then to the tracking class.
    """

    poolshift_opening = True

    session_effect: int

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        if self.poolshift_opening:
            return pgext.connection.cursor(self, cursor_factory=_TRACKED_CURSOR)
        cursor = super().cursor(*args, **kwargs)  # type: ignore[misc]
        if not isinstance(cursor, _TrackingCursorMixin):
            # The user's cursor() bypassed the tracking class: its statements go unseen, assume the worst.
            self.session_effect = max(self.session_effect, SESSION_STATE)
        return cursor


_connection_classes: dict[tuple[type | None, type], type] = {}


def tracked_connection_class(factory: type | None, base: type = TrackedConnection) -> type:
    """The class the pool opens connections with, for a user's ``connection_factory`` (None: psycopg2's).

    Built once per (factory, base) and cached: ``(front, factory, base)``, where ``base`` is
    :class:`TrackedConnection` or a subclass (the PgBouncer mode's), so the real connection ``isinstance``
    the user's class, its methods (``LoggingConnection.initialize()``, ``filter()``) work, and its
    ``cursor()`` picks its cursor class before the tracking subclass of that class is made. ``factory``
    must be a subclass of ``psycopg2.extensions.connection``.
    """
    key = (factory, base)
    built = _connection_classes.get(key)
    if built is None:
        with _tracked_classes_lock:
            built = _connection_classes.get(key)
            if built is None:
                bases = (base,) if factory is None else (factory, base)
                name = "PooledPsycopg2Connection" if factory is None else f"Pooled{factory.__name__}"
                own = {} if factory is None else {"poolshift_trusted": False}
                built = type(name, (_PoolOpeningFront, *bases), own)
                _connection_classes[key] = built
    return built


def plain_cursor(connection: pgext.connection) -> Any:
    """A cursor that bypasses tracking: for the pool's own reset statements."""
    return pgext.connection.cursor(connection)


def restore_plain_psycopg2_typecasters(connection: pgext.connection) -> None:
    """Undo the dialect's per-connection UUID typecasters, so results look as from ``psycopg2.connect``.

    Plain psycopg2 returns uuid columns as str; SQLAlchemy's psycopg2 dialect registers UUID typecasters on
    every connection it opens. Removing them from the connection lets psycopg2's global table decide, as
    without a pool: str, or whatever the application registered globally. It also leaves the connection's
    typecaster dicts empty, which makes the pristine check on return one comparison (see
    :func:`db_utils.postgres.reset.is_pristine`).
    """
    string_types = connection.string_types
    for oid in (_UUID_OID, _UUID_ARRAY_OID):
        string_types.pop(oid, None)


def neutralize_inherited_connections() -> int:
    """In a forked child: point every inherited connection's socket at /dev/null.

    A child must never talk on its parent's sockets. Dropping the references is not enough: when the
    child garbage-collects a psycopg2 connection, libpq sends a Terminate message on the shared socket
    and the server ends the *parent's* session. Replacing the descriptor in the child's own fd table
    (the parent's is untouched) makes that goodbye, and any accidental use, harmless.
    Returns how many connections were neutralized.
    """
    with _live_lock:
        inherited = [conn for conn in _live if not conn.closed]
    if not inherited:
        return 0
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for conn in inherited:
            try:
                os.dup2(devnull, conn.fileno())
            except (OSError, psycopg2.Error):  # already gone: nothing to protect
                continue
    finally:
        os.close(devnull)
    return len(inherited)
