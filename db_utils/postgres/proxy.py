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
import sys
import warnings
import weakref
from types import TracebackType
from typing import Any

import psycopg2

from db_utils.postgres.leases import Lease, outstanding

logger = logging.getLogger("db_utils.pool")

_CLOSED_MESSAGE = "connection already closed"
_PRUNE_EVERY = 64  # cursors handed out on one lease between two sweeps of the dead ones


class PooledConnection:
    """A pooled psycopg2 connection. Same API as ``psycopg2.extensions.connection``; see module docs."""

    __slots__ = ("__weakref__", "_committing", "_cursors", "_finalizer", "_lease", "_raw")

    def __init__(self, raw: Any, lease: Lease) -> None:
        set_own = object.__setattr__
        set_own(self, "_raw", raw)
        set_own(self, "_lease", lease)
        set_own(self, "_cursors", None)  # weak references to the cursors handed out, once there are any
        set_own(self, "_committing", False)  # a COMMIT was sent through this handle (see may_have_committed)
        # Optimisation: a bare weakref whose callback finds what to return in the lease registry does what
        # weakref.finalize(self, _return_dropped, ...) did here for a fraction of the cost (finalize builds
        # an info object and takes a class-wide registry slot on every checkout).
        finalizer = weakref.ref(self, _return_dropped)
        outstanding[finalizer] = lease
        set_own(self, "_finalizer", finalizer)

    # -- the parts that differ from a plain psycopg2 connection --------------------------------------

    def close(self) -> None:
        """Return the connection to the pool (uncommitted work is rolled back there). Idempotent."""
        if self._raw is None:
            return
        if self._cursors:
            self._close_cursors()
        object.__setattr__(self, "_raw", None)
        outstanding.pop(self._finalizer, None)
        self._lease.give_back()

    @property
    def closed(self) -> int:
        """Like psycopg2: 0 while usable, nonzero once closed (1) or broken (2)."""
        raw = self._raw
        return 1 if raw is None else int(raw.closed)

    def invalidate(self) -> None:
        """Close the underlying connection for real instead of returning it (e.g. after a disconnect)."""
        if self._raw is None:
            return
        self._close_cursors()
        object.__setattr__(self, "_raw", None)
        outstanding.pop(self._finalizer, None)
        self._lease.invalidate()

    def _invalidate_pool(self, error: BaseException) -> None:
        """After a disconnect (see ``api._attempt``): every connection of the pool as old as this one is
        suspect; mark them for replacement and discard this one (SQLAlchemy's ``Pool._invalidate``)."""
        if self._raw is None:
            return
        self._close_cursors()
        object.__setattr__(self, "_raw", None)
        outstanding.pop(self._finalizer, None)
        self._lease.invalidate_pool(error)

    def _close_cursors(self) -> None:
        """Close the cursors of this lease still open (named ones release their server-side portal)."""
        cursors = self._cursors
        if not cursors:
            return
        for ref in cursors:
            cursor = ref()
            if cursor is not None and not cursor.closed:
                with contextlib.suppress(psycopg2.Error):  # broken: the pool discards it anyway
                    cursor.close()

    @property
    def dbapi_connection(self) -> Any:
        """The real psycopg2 connection, for C-level APIs that reject wrappers (e.g. ``register_type``).

        State set on it directly is reset on return; a connection that cannot be reset is discarded.
        """
        return self._connection()

    def _connection(self) -> Any:
        raw = self._raw
        if raw is None:
            raise psycopg2.InterfaceError(_CLOSED_MESSAGE)
        return raw

    # -- everything else is the real connection's --------------------------------------------------

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        cursor = self._connection().cursor(*args, **kwargs)
        # The cursor keeps the lease (and its connection) alive. A cursor class without a __dict__ cannot
        # (rare: every factory psycopg2 ships has one); it is still closed when the lease ends.
        # Optimisation: not contextlib.suppress, which builds a context manager on every cursor.
        try:  # noqa: SIM105
            cursor.poolshift_lease = self
        except AttributeError:
            pass
        cursors = self._cursors
        if cursors is None:
            object.__setattr__(self, "_cursors", [weakref.ref(cursor)])
        else:
            if len(cursors) % _PRUNE_EVERY == 0:  # a long lease making many cursors: forget the dead ones
                cursors[:] = [ref for ref in cursors if ref() is not None]
            cursors.append(weakref.ref(cursor))
        return cursor

    def commit(self) -> None:
        raw = self._connection()
        object.__setattr__(self, "_committing", True)
        raw.commit()

    @property
    def may_have_committed(self) -> bool:
        """True once work on this lease may have been committed: a COMMIT was sent (``commit()``, the end
        of ``with conn:``) or the connection runs in autocommit mode. A disconnect after that may have
        lost only the server's answer, so the work must not be retried blindly."""
        raw = self._raw
        return self._committing or (raw is not None and bool(raw.autocommit))

    def rollback(self) -> None:
        self._connection().rollback()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._connection(), name, value)

    def __enter__(self) -> PooledConnection:
        # psycopg2 >= 2.9: `with conn:` starts a transaction block and does NOT close on exit.
        self._connection().__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        raw = self._connection()
        if exc_type is None:
            object.__setattr__(self, "_committing", True)
        raw.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        state = "closed" if self._raw is None else "open"
        return f"<PooledConnection {state} to {self._lease.display_url}>"


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


def checkout_location(depth: int) -> str:
    """``file:line`` of the caller ``depth`` frames up: cheap (no stack capture), for leak warnings."""
    try:
        frame = sys._getframe(depth + 1)
    except ValueError:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


# At interpreter exit the pools go away anyway: no warning storm (weakref.finalize's atexit=False).
_exiting = False


def _at_exit() -> None:
    global _exiting  # noqa: PLW0603 - a flag read by weakref callbacks, set once
    _exiting = True


atexit.register(_at_exit)


def _return_dropped(finalizer: weakref.ref[PooledConnection]) -> None:
    """Weakref callback of a handle dropped without close(): return the connection, then say so."""
    lease = outstanding.pop(finalizer, None)
    if lease is None or _exiting:
        return
    message = (
        f"pooled connection to {lease.display_url} (checked out at {lease.location()}) was "
        "garbage-collected without close(); it was returned to the pool and its uncommitted work rolled back"
    )
    try:
        lease.give_back()
    finally:
        logger.warning(message)
        warnings.warn(message, ResourceWarning, stacklevel=2)
