"""Checking a connection out of the pool and back in without SQLAlchemy's per-checkout objects.

``engine.raw_connection()`` builds a ``_ConnectionFairy`` with a ``weakref.finalize`` and dispatches the
``checkout`` and ``reset`` events on every checkout; on a pooled ``SELECT 1`` that costs more than the
query. The pool's own machinery is kept: ``QueuePool``'s queue, overflow and timeout (``_do_get``), the
record's recycling and invalidation (``get_connection``), its ``checkin`` (``finalize_callback``s, the
``checkin`` event, ``_return_conn``). What the fairy and the two events did is done here inline, with the
very functions the listeners call (:func:`~db_utils.postgres.instrument.check_out`,
:func:`~db_utils.postgres.instrument.reset_on_return`), so SQLAlchemy's own path (``engine.connect()``,
``raw_connection()``) behaves the same.

One :class:`Loan` per pooled connection (kept on its record, re-armed at each checkout) is what the lease
registry holds; each checkout gets a fresh :class:`~db_utils.postgres.proxy.PooledConnection` handle over
it, so a closed handle stays closed for good. A pool with checkout, checkin or reset listeners added by
the application goes through ``raw_connection()`` instead, so those listeners still see every checkout.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from sqlalchemy import exc, util
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry

from db_utils.postgres.instrument import PoolState, reset_on_return, validate
from db_utils.postgres.leases import Lease
from db_utils.postgres.proxy import PooledConnection, lend_handle

_monotonic = time.monotonic
_time = time.time


class _Lent:
    """Stands in SQLAlchemy's ``record.fairy_ref`` while a connection is lent: ``in_use`` is true, and
    ``needs_gc`` (``fairy_ref() is None``) false; the handle's own weak reference returns a dropped one."""

    __slots__ = ("__weakref__",)


_LENT_TO_POOLSHIFT = _Lent()
_LENT = weakref.ref(_LENT_TO_POOLSHIFT)


class Loan(Lease):
    """One pooled connection (a record of the pool), lent by :func:`lend`; see the module docs."""

    __slots__ = ("raw", "record", "state")

    def __init__(self, pool: Any, state: PoolState, record: ConnectionPoolEntry) -> None:
        super().__init__(pool, state.display_url)
        self.state = state
        self.record = record
        self.raw: Any = None

    def give_back(self) -> None:
        record, raw = self.record, self.raw
        self.raw = None
        self.state.counters.count_checkin()
        try:
            reset_on_return(self.state, raw, record)
        except Exception as error:  # what SQLAlchemy does when its reset fails: discard the connection
            record.invalidate(e=error)
        except BaseException as error:
            record._checkin_failed(error)  # type: ignore[attr-defined]
            raise
        # record.checkin() (checkin callbacks, the checkin event, _return_conn) without its Python-level
        # event test when there is nothing to call; counted above (_return_conn counts only checkouts made
        # through the listeners).
        checkin = self.pool.dispatch.checkin
        if record.finalize_callback or checkin.listeners or checkin.parent_listeners:  # type: ignore[attr-defined]
            record.checkin()  # type: ignore[attr-defined]
        else:
            record.fairy_ref = None  # type: ignore[attr-defined]
            self.pool._do_return_conn(record)

    def invalidate(self, error: BaseException | None = None) -> None:
        record = self.record
        self.raw = None
        self.state.counters.count_checkin()
        try:
            record.invalidate(e=error)
        finally:
            record.checkin()  # type: ignore[attr-defined]

    def invalidate_pool(self, error: BaseException) -> None:
        pool = self.pool
        if pool._invalidate_time < self.record.starttime:  # type: ignore[attr-defined]
            pool._invalidate_time = time.time()
        self.invalidate(error)


class _FairyLease(Lease):
    """A checkout made through SQLAlchemy's ``raw_connection()`` (pools with the application's own
    checkout/checkin/reset listeners): returned and invalidated through its fairy."""

    __slots__ = ("fairy",)

    def __init__(self, fairy: Any, display_url: str) -> None:
        super().__init__(fairy._pool, display_url)
        self.fairy = fairy

    def give_back(self) -> None:
        self.fairy.close()

    def invalidate(self, error: BaseException | None = None) -> None:
        self.fairy.invalidate(error)

    def invalidate_pool(self, error: BaseException) -> None:
        self.fairy._pool._invalidate(self.fairy, error)


def lend(engine: Engine, state: PoolState, where: str | tuple[str, int] | None) -> PooledConnection:
    """Check a connection out of ``engine``'s pool as a new handle; ``where`` names the borrower."""
    pool = engine.pool
    # Checkout, checkin or reset listeners besides poolshift's own (one checkout, one reset)? Read from
    # the listener collections' deques: their own __len__/__bool__ are Python calls.
    dispatch = pool.dispatch
    checkout, reset, checkin = dispatch.checkout, dispatch.reset, dispatch.checkin
    if (
        len(checkout.listeners) != 1
        or len(reset.listeners) != 1
        or checkout.parent_listeners
        or reset.parent_listeners
        or checkin.listeners
        or checkin.parent_listeners
    ):
        fairy = engine.raw_connection()
        lease: Lease = _FairyLease(fairy, state.display_url)
        raw = fairy.dbapi_connection
    else:
        record, raw = _check_out_record(pool, state)
        try:
            loan: Loan = record.poolshift_loan  # type: ignore[attr-defined]
        except AttributeError:
            loan = record.poolshift_loan = Loan(pool, state, record)  # type: ignore[attr-defined]
        loan.raw = raw
        lease = loan
    lease.where = where
    lease.since = _monotonic()
    lease.warned = False
    return lend_handle(raw, lease)


def _check_out_record(pool: Any, state: PoolState) -> tuple[ConnectionPoolEntry, Any]:
    """``_ConnectionRecord.checkout`` and ``_ConnectionFairy._checkout`` without the fairy: a record from
    the queue (waiting, overflow, timeout), connected or recycled as needed, then validated and counted;
    a failed validation replaces the connection, once more at most, as SQLAlchemy does."""
    record = pool._do_get()
    # Optimisation: ``record.get_connection()``'s tests read here; it is called only when it has work to
    # do (no connection yet, recycle due, invalidated), and then decides itself.
    raw = record.dbapi_connection
    started = record.starttime
    recycle = pool._recycle
    if (
        raw is None
        or pool._invalidate_time > started
        or record._soft_invalidate_time > started
        or (recycle > -1 and _time() - started > recycle)
    ):
        try:
            raw = record.get_connection()
        except BaseException as error:
            with util.safe_reraise():
                record._checkin_failed(error, _fairy_was_created=False)
            raise
    record.fairy_ref = _LENT
    attempts = 2
    while attempts > 0:
        try:
            reused = validate(state, raw, record.info)
        except exc.DisconnectionError as error:
            record.invalidate(error)
            if error.invalidate_pool:
                pool._invalidate(record, error, _checkin=False)
            try:
                raw = record.get_connection()
            except BaseException as reconnect_error:
                with util.safe_reraise():
                    record._checkin_failed(reconnect_error)
                raise
            attempts -= 1
        except BaseException as error:
            with util.safe_reraise():
                record._checkin_failed(error)
            raise
        else:
            counters = state.counters
            counters.count_checkout()
            if reused:
                counters.count_reuse()
            return record, raw
    record.invalidate()
    record.checkin()
    raise exc.InvalidRequestError("This connection is closed")
