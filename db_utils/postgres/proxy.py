"""The handle a borrower holds: behaves like a psycopg2 connection, ``close()`` returns it to the pool.

Why not hand out SQLAlchemy's own ``_ConnectionFairy``: it forwards attribute *reads* but not writes, so
``conn.autocommit = True`` would silently set an attribute on the fairy and never reach psycopg2; and a
stale reference kept after ``close()`` would still reach a connection that now belongs to someone else.
This handle forwards reads and writes, and after ``close()`` every use raises psycopg2's
``InterfaceError`` exactly like a closed psycopg2 connection.

A handle garbage-collected without ``close()`` is returned to the pool by a weak reference callback
(never leaked), with a ``ResourceWarning`` naming where it was checked out.

Cursors belong to the lease: a cursor handed out through this handle keeps the handle alive (so
``return get_postgres_connection().cursor()`` cannot give its connection to the next borrower while the
cursor is in use), and every such cursor still open when the lease ends is closed, so a stale cursor
raises ``InterfaceError`` as with a closed psycopg2 connection. The cursors are psycopg2's own (no
wrapper): they carry a reference to the handle in an attribute, and the handle keeps weak references
to them.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import time
import warnings
import weakref
from types import TracebackType
from typing import Any

import psycopg2
import psycopg2.extensions

from db_utils.postgres.driver import PLAIN_CURSOR_CLASS
from db_utils.postgres.leases import READABLE_AFTER_CLOSE, Lease, Where, outstanding

logger = logging.getLogger("db_utils.pool")

_CLOSED_MESSAGE = "connection already closed"
_monotonic = time.monotonic
_connection_cursor = psycopg2.extensions.connection.cursor
_PRUNE_EVERY = 64  # cursors handed out on one lease between two sweeps of the dead ones


class PooledConnection:
    """A pooled psycopg2 connection. Same API as ``psycopg2.extensions.connection``; see module docs.

    A handle is two slots: the real connection (None once closed, for good) and its lease. What the
    lease needs per checkout (the handle's weak reference, its cursors) lives on the lease, which is
    re-armed at each checkout: only the handle lent now ever reaches it (every method checks ``_raw``
    first). Handles are made by :func:`lend_handle` (or as it does, by ``lending.lend``).
    """

    __slots__ = ("__weakref__", "_committing", "_lease", "_raw")

    _raw: Any  # the real connection; None once closed
    _lease: Lease
    _committing: bool  # set by the first commit through this handle (see may_have_committed)

    # -- the parts that differ from a plain psycopg2 connection --------------------------------------

    def close(self) -> None:
        """Return the connection to the pool (uncommitted work is rolled back there). Idempotent."""
        if self._raw is None:
            return
        lease = self._lease
        cursors = lease.cursors
        if cursors:
            # _close_cursors written out: the everyday cursor was closed by its ``with`` block already.
            lease.cursors = None
            for ref in cursors:
                cursor = ref()
                if cursor is not None and not cursor.closed:
                    _close_cursor(cursor)
        set_raw(self, None)
        outstanding.pop(lease.ref, None)  # type: ignore[arg-type]
        lease.ref = None  # the weak reference dies here: its callback never runs
        lease.give_back()

    @property
    def closed(self) -> int:
        """Like psycopg2: 0 while usable, nonzero once closed (1) or broken (2)."""
        raw = self._raw
        return 1 if raw is None else int(raw.closed)

    def invalidate(self) -> None:
        """Close the underlying connection for real instead of returning it (e.g. after a disconnect)."""
        lease = self._end()
        if lease is not None:
            lease.invalidate()

    def _invalidate_pool(self, error: BaseException) -> None:
        """After a disconnect (see ``api._attempt``): every connection of the pool as old as this one is
        suspect; mark them for replacement and discard this one (SQLAlchemy's ``Pool._invalidate``)."""
        lease = self._end()
        if lease is not None:
            lease.invalidate_pool(error)

    def _end(self) -> Lease | None:
        """End the lease without returning the connection: its cursors closed, the handle closed."""
        if self._raw is None:
            return None
        lease = self._lease
        _close_cursors(lease)
        set_raw(self, None)
        outstanding.pop(lease.ref, None)  # type: ignore[arg-type]
        lease.ref = None
        return lease

    @property
    def _cursors(self) -> list[weakref.ref[Any]] | None:
        """Weak references to the cursors handed out on this lease (while it is open)."""
        return self._lease.cursors if self._raw is not None else None

    @property
    def dbapi_connection(self) -> Any:
        """The real psycopg2 connection, for C-level APIs that reject wrappers (e.g. ``register_type``).

        State set on it directly is reset on return; a connection that cannot be reset is discarded.
        """
        return self._connection()

    def _connection(self) -> Any:
        """The real connection, handed to the borrower's code: from now on it is exposed (see
        :meth:`expose`)."""
        raw = self._raw
        if raw is None:
            raise psycopg2.InterfaceError(_CLOSED_MESSAGE)
        self._lease.expose()
        return raw

    def expose(self) -> None:
        """Record that the borrower's code reached the real connection (an attribute of it read or set
        through this handle, ``dbapi_connection``, a cursor's ``connection``, a cursor class of the
        application's): from then on every return of that connection reads back everything a borrower
        can change on it, since a reference to it may outlive this lease. A connection never exposed can
        have changed only through its cursors' statements (tracked in ``session_effect``), its
        transaction, its notices and notifies, and a break: its return reads back only those
        (:data:`~db_utils.postgres.reset.UNEXPOSED_STATE`)."""
        self._lease.expose()

    # -- everything else is the real connection's --------------------------------------------------

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        raw = self._raw
        if raw is None:
            raise psycopg2.InterfaceError(_CLOSED_MESSAGE)
        if args or kwargs or raw.cursor_factory is not None:
            cursor = raw.cursor(*args, **kwargs)
            if not getattr(cursor, "poolshift_trusted", False):  # its class got the real connection
                self._lease.expose()
        else:
            # The everyday ``conn.cursor()``: the class's own cursor() skipped when the table says what
            # it would make (a Python frame less on every cursor).
            tracked = PLAIN_CURSOR_CLASS.get(type(raw))
            cursor = raw.cursor() if tracked is None else _connection_cursor(raw, None, tracked)
        # The cursor keeps the lease (and its connection) alive. A cursor class without a __dict__ cannot
        # (rare: every factory psycopg2 ships has one); it is still closed when the lease ends.
        # Optimisation: not contextlib.suppress, which builds a context manager on every cursor.
        try:  # noqa: SIM105
            cursor.poolshift_lease = self
        except AttributeError:
            pass
        lease = self._lease
        cursors = lease.cursors
        if cursors is None:
            lease.cursors = [_weak(cursor)]
        else:
            if len(cursors) % _PRUNE_EVERY == 0:  # a long lease making many cursors: forget the dead ones
                cursors[:] = [ref for ref in cursors if ref() is not None]
            cursors.append(_weak(cursor))
        return cursor

    def commit(self) -> None:
        raw = self._raw
        if raw is None:
            raise psycopg2.InterfaceError(_CLOSED_MESSAGE)
        _set_committing(self, True)
        raw.commit()

    @property
    def may_have_committed(self) -> bool:
        """True once work on this lease may have been committed: a COMMIT was sent (``commit()``, the end
        of ``with conn:``) or the connection runs in autocommit mode. A disconnect after that may have
        lost only the server's answer, so the work must not be retried blindly."""
        raw = self._raw
        try:
            committing = _get_committing(self, PooledConnection)
        except AttributeError:  # never set: nothing committed through this handle
            committing = False
        return bool(committing) or (raw is not None and bool(raw.autocommit))

    def rollback(self) -> None:
        raw = self._raw
        if raw is None:
            raise psycopg2.InterfaceError(_CLOSED_MESSAGE)
        raw.rollback()

    def __getattr__(self, name: str) -> Any:
        if self._raw is None and name in READABLE_AFTER_CLOSE:
            return self._lease.after_close[name]  # as a closed psycopg2 connection answers
        return getattr(self._connection(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._connection(), name, value)

    def __enter__(self) -> PooledConnection:
        # psycopg2 >= 2.9: `with conn:` starts a transaction block and does NOT close on exit.
        raw = self._raw
        if raw is None:
            raise psycopg2.InterfaceError(_CLOSED_MESSAGE)
        raw.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        raw = self._raw
        if raw is None:
            raise psycopg2.InterfaceError(_CLOSED_MESSAGE)
        if exc_type is None:
            _set_committing(self, True)
        raw.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        state = "closed" if self._raw is None else "open"
        return f"<PooledConnection {state} to {self._lease.display_url}>"


# The slots' own descriptors: the handle's __setattr__ forwards to the real connection. A handle is made
# with new_handle(PooledConnection) and its two slots set through set_raw/set_lease (no __init__ frame, no
# object.__setattr__ name lookups): see lend_handle, and lending.lend, which does the same written out.
_slot: Any = PooledConnection.__dict__
set_raw = _slot["_raw"].__set__
set_lease = _slot["_lease"].__set__
_set_committing = _slot["_committing"].__set__
_get_committing = _slot["_committing"].__get__
new_handle = object.__new__
_weak = weakref.ref


def lend_handle(
    raw: Any, lease: Lease, where: Where | None, since: float, owned: bool = False
) -> PooledConnection:
    """A new handle over ``raw``, registered as ``lease``'s in :data:`~db_utils.postgres.leases.outstanding`
    (the lease re-armed for this checkout, which started at ``since``).

    A bare weakref whose callback finds what to return in the lease registry (:func:`return_dropped`)
    does what ``weakref.finalize(handle, ...)`` would, for a fraction of the cost. An ``owned`` lease is
    ended by its caller in a ``finally`` of the frame that holds the handle (``execute_with_pool``): the
    lease itself is its key, no weak reference.
    """
    lease.where = where
    lease.since = since
    lease.warned = False
    lease.cursors = None
    handle: PooledConnection = new_handle(PooledConnection)
    set_raw(handle, raw)
    set_lease(handle, lease)
    key: Any = lease if owned else _weak(handle, return_dropped)
    lease.ref = key
    outstanding[key] = lease
    return handle


def _close_cursors(lease: Lease) -> None:
    """Close the cursors of this lease still open (named ones release their server-side portal)."""
    cursors = lease.cursors
    if not cursors:
        return
    lease.cursors = None
    for ref in cursors:
        cursor = ref()
        if cursor is not None and not cursor.closed:
            _close_cursor(cursor)


def _close_cursor(cursor: Any) -> None:
    with contextlib.suppress(psycopg2.Error):  # broken: the pool discards it anyway
        cursor.close()


def driver_connection(obj: Any) -> Any:
    """The real psycopg2 connection behind a pooled handle; anything else is returned unchanged.

    For psycopg2's C functions that type-check their connection argument (``sql.Composable.as_string``,
    ``quote_ident``, ``adapt(x).prepare``, ``register_type``, ``extras.register_uuid``/``_json``/
    ``_jsonb``/``hstore``/``composite``, ``encrypt_password``): the codemod wraps their argument in this
    call, which is correct before pooling (a plain connection or cursor passes through) and after. A
    typecaster registered on the real connection is removed when it is returned, so the next borrower
    never inherits it. Cursors are never wrapped: a pooled handle's cursors are real.
    """
    if isinstance(obj, PooledConnection):
        return obj._connection()
    return obj


# At interpreter exit the pools go away anyway: no warning storm (weakref.finalize's atexit=False).
_exiting = False


def _at_exit() -> None:
    global _exiting  # noqa: PLW0603 - a flag read by weakref callbacks, set once
    _exiting = True


atexit.register(_at_exit)


# Call sites whose dropped handles were logged: code that never closes (``with helper() as conn:``, whose
# psycopg2 meaning is commit, not close) drops one per call, and a log line per request would bury the
# rest. Bounded: call sites are code, but code can be made at run time.
_logged_sites: set[str | Where | None] = set()
_LOGGED_SITES_MAX = 4096


def return_dropped(finalizer: weakref.ref[PooledConnection]) -> None:
    """Weakref callback of a handle dropped without close(): return the connection, then say so (the
    ``ResourceWarning`` each time, for warning filters to judge; the log line once per call site)."""
    lease = outstanding.pop(finalizer, None)
    if lease is None or _exiting:
        return
    message = (
        f"pooled connection to {lease.display_url} (checked out at {lease.location()}) was "
        "garbage-collected without close(); it was returned to the pool and its uncommitted work rolled back"
    )
    site = lease.where
    try:
        lease.give_back()
    finally:
        if site not in _logged_sites:
            if len(_logged_sites) < _LOGGED_SITES_MAX:
                _logged_sites.add(site)
            logger.warning("%s (logged once per call site)", message)
        warnings.warn(message, ResourceWarning, stacklevel=2)
