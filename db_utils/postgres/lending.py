"""Checking a connection out of the pool and back in without SQLAlchemy's per-checkout objects.

``engine.raw_connection()`` builds a ``_ConnectionFairy`` with a ``weakref.finalize`` and dispatches the
``checkout`` and ``reset`` events on every checkout; on a pooled ``SELECT 1`` that costs more than the
query. The pool's own machinery is kept: ``QueuePool``'s queue, overflow and timeout (``_do_get``), the
record's recycling and invalidation (``get_connection``), its ``checkin`` (``finalize_callback``s, the
``checkin`` event, ``_return_conn``). What the fairy and the two events did is done here, with the very
functions the listeners call (:func:`~db_utils.postgres.instrument.validate`,
:func:`~db_utils.postgres.instrument.reset_on_return`), so SQLAlchemy's own path (``engine.connect()``,
``raw_connection()``) behaves the same.

The everyday checkout (a connection idle in the queue, used within ``ping_after``, its socket quiet) and
the everyday return (nothing to reset, nobody waiting) are each one function: :func:`lend` and
:meth:`Loan.give_back` make those functions' first tests inline, in the same order, and call them only
when a test fails. Every step is a Python-level operation on a path that costs a few microseconds in
all, so each call, attribute and dictionary read saved shows.

One :class:`Loan` per pooled connection (kept in its :class:`~db_utils.postgres.instrument.ConnectionFacts`,
re-armed at each checkout) is what the lease registry holds; each checkout gets a fresh
:class:`~db_utils.postgres.proxy.PooledConnection` handle over it, so a closed handle stays closed for
good. A pool with checkout, checkin or reset listeners added by the application goes through
``raw_connection()`` instead, so those listeners still see every checkout.
"""

from __future__ import annotations

import time
import weakref
from types import FrameType
from typing import Any

import psycopg2.extensions as pgext
from sqlalchemy import exc, util
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry

from db_utils.postgres import instrument
from db_utils.postgres.instrument import (
    FACTS,
    ConnectionFacts,
    PoolState,
    keep_listener_deques,
    reset_on_return,
    validate,
)
from db_utils.postgres.leases import Lease, borrower
from db_utils.postgres.proxy import PooledConnection, lend_handle
from db_utils.postgres.reset import UNEXPOSED_STATE, is_pristine

_monotonic = time.monotonic
_time = time.time
_weak = weakref.ref
_IDLE = pgext.TRANSACTION_STATUS_IDLE
_IN_TRANSACTION = (pgext.TRANSACTION_STATUS_INTRANS, pgext.TRANSACTION_STATUS_INERROR)


class _Lent:
    """Stands in SQLAlchemy's ``record.fairy_ref`` while a connection is lent: ``in_use`` is true, and
    ``needs_gc`` (``fairy_ref() is None``) false; the handle's own weak reference returns a dropped one."""

    __slots__ = ("__weakref__",)


_LENT_TO_POOLSHIFT = _Lent()
_LENT = weakref.ref(_LENT_TO_POOLSHIFT)


class Loan(Lease):
    """One pooled connection (a record of the pool and its current connection), lent by :func:`lend`."""

    __slots__ = ("facts", "raw", "record", "state")

    def __init__(
        self, pool: Any, state: PoolState, record: ConnectionPoolEntry, facts: ConnectionFacts
    ) -> None:
        super().__init__(pool, state.display_url, record.dbapi_connection)
        self.state = state
        self.record = record
        self.facts = facts
        self.raw: Any = None

    def give_back(self) -> None:
        record, raw, facts = self.record, self.raw, self.facts
        self.raw = None
        state = self.state
        state.counters.count_checkin()
        # The everyday return: a connection of this process with nothing to reset (reset_on_return's
        # tests, which it makes again when one fails). Legacy code's close() leaves its transaction open:
        # it is rolled back first, as reset_connection would do first, then the same test applies.
        try:
            pristine = False
            if facts.pid == instrument.this_process:
                status = raw.get_transaction_status()
                if status in _IN_TRANSACTION:
                    try:  # noqa: SIM105 - contextlib.suppress builds a context manager per return
                        raw.rollback()
                    except Exception:  # noqa: S110 - the full reset below finds out what is wrong
                        pass
                    status = raw.get_transaction_status()
                if facts.exposed:
                    pristine = is_pristine(raw, facts.baseline)
                else:  # never reached by a borrower's code: see UNEXPOSED_STATE
                    pristine = status == _IDLE and UNEXPOSED_STATE(raw) == facts.baseline.unexposed_pristine
            if pristine:
                facts.last_returned = _monotonic()
            else:
                reset_on_return(state, raw, record)
        except Exception as error:  # what SQLAlchemy does when its reset fails: discard the connection
            record.invalidate(e=error)
        except BaseException as error:
            record._checkin_failed(error)  # type: ignore[attr-defined]
            raise
        # record.checkin() (checkin callbacks, the checkin event, _return_conn) without its Python-level
        # event test when there is nothing to call; counted above (_return_conn counts only checkouts made
        # through the listeners).
        pool = self.pool
        # The pool's and its class's checkin listeners (keep_listener_deques: kept at install, or by the
        # lend() that made this loan).
        listeners = pool.listener_deques
        if record.finalize_callback or listeners[4] or listeners[5]:  # type: ignore[attr-defined]
            record.checkin()  # type: ignore[attr-defined]
            return
        record.fairy_ref = None  # type: ignore[attr-defined]
        # FairQueuePool._do_return_conn's everyday case (nobody waits, room in the idle queue) written out.
        lock = pool._handoff_lock
        lock.acquire()
        try:
            if not pool._waiters and len(pool._idle) < pool._idle_limit:
                pool._idle.append(record)
                return
        finally:
            lock.release()
        pool._do_return_conn(record)

    def expose(self) -> None:
        self.facts.exposed = True

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
        super().__init__(fairy._pool, display_url, fairy.dbapi_connection)
        self.fairy = fairy  # its checkout listener marked the connection exposed (instrument.check_out)

    def give_back(self) -> None:
        self.fairy.close()

    def expose(self) -> None:
        facts: ConnectionFacts | None = self.fairy.info.get(FACTS)
        if facts is not None:
            facts.exposed = True

    def invalidate(self, error: BaseException | None = None) -> None:
        self.fairy.invalidate(error)

    def invalidate_pool(self, error: BaseException) -> None:
        self.fairy._pool._invalidate(self.fairy, error)


def lend(engine: Engine, state: PoolState, caller: FrameType | None, owned: bool = False) -> PooledConnection:
    """Check a connection out of ``engine``'s pool as a new handle; ``caller`` is the borrower's frame
    (or a db_utils frame it called through: see :func:`~db_utils.postgres.leases.borrower`).

    ``owned``: the caller ends the lease itself, in a ``finally`` of the frame that holds the handle
    (``execute_with_pool``), so the handle needs no weak reference to return it if dropped.
    """
    pool: Any = engine.pool
    # Checkout, checkin or reset listeners besides poolshift's own (one checkout, one reset)?
    checkout, reset, checkout_class, reset_class, checkin, checkin_class = (
        pool.listener_deques or keep_listener_deques(pool)
    )
    if len(checkout) != 1 or len(reset) != 1 or checkout_class or reset_class or checkin or checkin_class:
        fairy = engine.raw_connection()
        lease = _FairyLease(fairy, state.display_url)
        return lend_handle(fairy.dbapi_connection, lease, borrower(caller), _monotonic())
    # FairQueuePool._do_get's everyday case (nobody waits, a connection is idle) written out; see there
    # why no lock is needed.
    record: Any = None
    if not pool._waiters:
        idle = pool._idle
        if idle:
            try:  # noqa: SIM105 - contextlib.suppress builds a context manager per checkout
                record = idle.pop() if pool._lifo else idle.popleft()
            except IndexError:
                pass
    if record is None:
        record = pool._do_get()
    # The everyday checkout: record.get_connection()'s tests (no connection, invalidated, recycle due),
    # then validate()'s (this process's connection, used before, socket quiet, within ping_after), in
    # their order. Any test failing takes the full path, which decides itself.
    raw = record.dbapi_connection
    started = record.starttime
    recycle = pool._recycle
    facts: ConnectionFacts | None = record.info.get(FACTS)
    record.fairy_ref = _LENT
    now = _monotonic()
    try:
        last_returned = facts.last_returned  # type: ignore[union-attr]
        everyday = (
            raw is not None
            and pool._invalidate_time <= started
            and record._soft_invalidate_time <= started
            and (recycle <= -1 or _time() - started <= recycle)
            and facts.pid == instrument.this_process  # type: ignore[union-attr]
            and last_returned is not None
            and not raw.closed
            and not facts.poller.poll(0)  # type: ignore[union-attr]
            and now - last_returned < state.ping_after
        )
    except (AttributeError, OSError, ValueError):  # no facts, no poller, no socket: the full path says
        everyday = False
    if everyday:
        state.counters.count_checkout()
    else:
        raw, facts = _check_out_slowly(pool, state, record)
        now = _monotonic()  # the lease starts once the connection is ready (it may have reconnected)
    loan = facts.loan  # type: ignore[union-attr]
    if loan is None:
        loan = facts.loan = Loan(pool, state, record, facts)  # type: ignore[union-attr,arg-type]
    loan.raw = raw
    return lend_handle(raw, loan, borrower(caller), now, owned)


def _check_out_slowly(pool: Any, state: PoolState, record: Any) -> tuple[Any, ConnectionFacts]:
    """``_ConnectionRecord.checkout`` and ``_ConnectionFairy._checkout`` without the fairy, for a record
    :func:`lend` did not find ready: connected or recycled as needed, then validated and counted; a
    failed validation replaces the connection, once more at most, as SQLAlchemy does."""
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
    attempts = 2
    while attempts > 0:
        facts = record.info.get(FACTS)
        try:
            reused = validate(state, raw, facts)
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
            if not reused:  # counted after its checkout (see PoolCounters.snapshot)
                counters.count_first_use()
            return raw, facts
    record.invalidate()
    record.checkin()
    raise exc.InvalidRequestError("This connection is closed")
