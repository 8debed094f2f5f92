"""The SQLAlchemy pool events and the QueuePool subclass that make a pool observable and safe to share.

Listeners (installed once per engine, they survive ``engine.dispose()`` because SQLAlchemy hands the same
dispatcher to the recreated pool):

- ``connect``: restore plain-psycopg2 typecasters, remember the connection's baseline state and pid;
  count creations and recycles.
- ``checkout``: validate a connection that sat idle longer than ``ping_after`` (HikariCP's trick, see
  :func:`_on_checkout`), refuse connections inherited across ``fork()``; count checkouts and reuses.
- ``reset`` (SQLAlchemy's own reset is switched off with ``pool_reset_on_return=None``): run
  :func:`db_utils._pg_reset.reset_connection`; a connection that cannot be reset is invalidated here,
  never raised about (a raising reset listener makes SQLAlchemy log an ERROR).
- ``invalidate``: count broken connections.

:class:`FairQueuePool` replaces QueuePool's wait with a FIFO hand-off: a returned connection goes straight to
the oldest waiting thread, so a thread that returns a connection cannot take it straight back while others
wait (the cause of QueuePool's high p99 under contention). Waits and timeouts have no event, so
:class:`InstrumentedQueuePool` counts them from that wait and turns the timeout into
:class:`PoolTimeoutError` naming size, overflow, timeout and a hint.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

import psycopg2
from sqlalchemy import event, exc, util
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from sqlalchemy.util import queue as sqla_queue

from db_utils._pg_driver import restore_plain_psycopg2_typecasters
from db_utils._pg_reset import Baseline, reset_connection
from db_utils.config import PoolSettings
from db_utils.stats import PoolCounters

logger = logging.getLogger("db_utils.pool")

# Keys in ConnectionPoolEntry.info (cleared by SQLAlchemy whenever the record reconnects, so their
# absence means "fresh connection") and record_info (kept for the record's whole life).
_BASELINE = "poolshift_baseline"
_PID = "poolshift_pid"
_LAST_RETURNED = "poolshift_last_returned"
_DISCARDING = "poolshift_discarding"
_EVER_CONNECTED = "poolshift_ever_connected"
_WAS_INVALIDATED = "poolshift_was_invalidated"


class PoolTimeoutError(exc.TimeoutError):
    """No connection became free within the pool timeout (a subclass of SQLAlchemy's TimeoutError)."""


@dataclass
class PoolState:
    """Everything poolshift knows about one engine's pool; ``display_url`` is the only URL form shown."""

    display_url: str
    settings: PoolSettings
    ping_after: float
    counters: PoolCounters = field(default_factory=PoolCounters)

    def timeout_message(self) -> str:
        s = self.settings
        return (
            f"no pooled connection free for {self.display_url} within the pool timeout: pool size "
            f"{s.pool_size}, max overflow {s.max_overflow}, timeout {s.timeout:g} s (all "
            f"{s.pool_size + s.max_overflow} connections checked out). Connections are probably held too "
            "long or leaked (not closed); otherwise raise DB_POOL_SIZE/DB_MAX_OVERFLOW within the "
            "server's max_connections"
        )


class _NewConnectionSlot:
    """Handed to a waiter instead of a connection: "one unit of overflow capacity, already counted, is yours".

    Capacity freed while threads wait (an overflow connection that failed to open) goes to the oldest
    waiter like a returned connection does; otherwise the thread that happened to check first would take it.
    """


_NEW_CONNECTION = _NewConnectionSlot()
_Handoff = ConnectionPoolEntry | _NewConnectionSlot


class _Waiter:
    """One thread's place in the line of checkouts waiting for a connection."""

    __slots__ = ("handed", "wakeup")

    def __init__(self, lock: threading.Lock) -> None:
        # Written only by the thread that pops this waiter off the line, with the pool's hand-off lock held;
        # read by the waiter with that same lock held, so "handed or not" is never ambiguous.
        self.handed: _Handoff | None = None
        # One condition per waiter (over the pool's lock) so a hand-off wakes exactly the thread it names.
        self.wakeup = threading.Condition(lock)


class FairQueuePool(QueuePool):
    """QueuePool that hands a returned connection straight to the oldest waiting thread (FIFO).

    SQLAlchemy's QueuePool puts a returned connection back into its queue and notifies a waiter; before
    that waiter runs, the returning thread (or any newcomer) can take the connection again. Under
    contention some threads then finish fast and others starve: a high p99. Like psycopg_pool
    (``_return_connection`` hands to the head of ``_waiting``) and HikariCP's hand-off queue, this pool
    gives a returned connection to the oldest waiter directly, and a newcomer queues behind existing
    waiters instead of overtaking them. With nobody waiting, behaviour is QueuePool's: idle connections
    in the (LIFO) queue, overflow connections opened below the bound and closed when returned beyond
    ``pool_size``.

    Locking: ``_handoff_lock`` guards the line of waiters and every decision that reads the idle queue or
    the overflow count together with the line ("nobody waits, so take an idle one", "somebody waits, so
    hand this over"). Order: ``_handoff_lock`` before the queue's mutex and QueuePool's
    ``_overflow_lock``, never the reverse. No I/O happens under it (opening and closing connections are
    done after releasing it).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handoff_lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()  # oldest first
        _live_pools.add(self)

    def waiting(self) -> int:
        """How many checkouts are waiting in line for a connection right now."""
        return len(self._waiters)

    def _do_get(self) -> ConnectionPoolEntry:
        with self._handoff_lock:
            handed = self._take_without_waiting()
            if handed is None:
                waiter = _Waiter(self._handoff_lock)
                self._waiters.append(waiter)
        if handed is None:
            started = time.monotonic()
            handed = self._wait_for_turn(waiter, started + self._timeout)
            waited = time.monotonic() - started
            if handed is None:
                self._raise_timeout(waited)
            self._record_wait(waited)
        if isinstance(handed, _NewConnectionSlot):
            return self._open_in_slot()
        return handed

    def _take_without_waiting(self) -> _Handoff | None:
        """An idle connection or a new overflow slot, unless someone is already waiting (lock held)."""
        if self._waiters:
            # FIFO: a newcomer must not overtake threads already in line. Returns and freed slots go to
            # waiters under this lock, so waiters normally coexist with neither an idle connection nor
            # a free slot; this guard also covers dispose(), which resets the overflow count unlocked.
            return None
        try:
            return self._pool.get(False)  # LIFO over idle connections, as configured
        except sqla_queue.Empty:
            pass
        if self._inc_overflow():
            return _NEW_CONNECTION
        return None

    def _wait_for_turn(self, waiter: _Waiter, deadline: float) -> _Handoff | None:
        """What was handed to ``waiter`` before ``deadline``, or None after leaving the line.

        The timeout-vs-hand-off race is decided under ``_handoff_lock``: a hand-off pops the waiter and
        sets ``handed`` with the lock held, and the waiter reads ``handed`` (and removes itself on
        timeout) with the lock held. So a waiter whose deadline passed while a connection was being
        handed to it keeps that connection (the lateness is at most one lock hand-over), and a waiter
        that left the line can no longer be found by a returning thread: nothing is ever handed to
        nobody.
        """
        try:
            with self._handoff_lock:
                while waiter.handed is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._waiters.remove(waiter)
                        return None
                    waiter.wakeup.wait(remaining)
                return waiter.handed
        except BaseException:
            # Interrupted while waiting (KeyboardInterrupt, a signal handler's exception): leave the line
            # and give back whatever was handed meanwhile, so it is not lost with this thread's frame.
            self._give_back(self._leave_line(waiter))
            raise

    def _leave_line(self, waiter: _Waiter) -> _Handoff | None:
        with self._handoff_lock:
            handed, waiter.handed = waiter.handed, None
            if handed is None and waiter in self._waiters:
                self._waiters.remove(waiter)
            return handed

    def _give_back(self, handed: _Handoff | None) -> None:
        if isinstance(handed, _NewConnectionSlot):
            self._dec_overflow()
        elif handed is not None:
            self._do_return_conn(handed)

    def _open_in_slot(self) -> ConnectionPoolEntry:
        try:
            return self._create_connection()
        except BaseException:
            with util.safe_reraise():
                self._dec_overflow()  # frees the slot: it goes to the oldest waiter, if any
            raise

    def _hand_to_oldest(self, handed: _Handoff) -> bool:
        """Give ``handed`` to the oldest waiter and wake it; False if nobody waits (lock held)."""
        if not self._waiters:
            return False
        waiter = self._waiters.popleft()
        waiter.handed = handed
        waiter.wakeup.notify()
        return True

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        with self._handoff_lock:
            if self._hand_to_oldest(record):
                return
            try:
                self._pool.put(record, False)
                return
            except sqla_queue.Full:
                pass
        # Beyond pool_size with nobody waiting: close the overflow connection, as QueuePool does.
        try:
            record.close()
        finally:
            self._dec_overflow()

    def _dec_overflow(self) -> Literal[True]:
        # A slot freed while threads wait becomes theirs (already counted); otherwise it is uncounted.
        with self._handoff_lock:
            if not self._hand_to_oldest(_NEW_CONNECTION):
                super()._dec_overflow()
        return True

    def _record_wait(self, waited: float) -> None:
        """Hook: a checkout got a connection after waiting ``waited`` seconds in line."""

    def _raise_timeout(self, waited: float) -> NoReturn:
        """Hook: a checkout waited the whole timeout; raises QueuePool's own error."""
        raise exc.TimeoutError(
            f"QueuePool limit of size {self.size()} overflow {self.overflow()} reached, connection timed "
            f"out, timeout {self._timeout:0.2f}",
            code="3o7r",
        )

    def _reset_after_fork(self) -> None:
        # In a forked child only the forking thread exists: the lock may have been held by a thread that
        # is gone, and every waiter in line is gone. The child never checks out from this pool again
        # (pool.py recreates it), but a connection checked out across fork() may still be returned to it.
        self._handoff_lock = threading.Lock()
        self._waiters = deque()


# Every FairQueuePool alive, for the at-fork reset (weak: a disposed pool must still be collectable).
_live_pools: weakref.WeakSet[FairQueuePool] = weakref.WeakSet()


def _reset_pools_after_fork() -> None:
    for pool in list(_live_pools):
        pool._reset_after_fork()


os.register_at_fork(after_in_child=_reset_pools_after_fork)


class InstrumentedQueuePool(FairQueuePool):
    """Fair QueuePool that counts waits and timeouts and raises :class:`PoolTimeoutError` with context."""

    poolshift_state: PoolState | None = None

    def _record_wait(self, waited: float) -> None:
        state = self.poolshift_state
        if state is not None:
            state.counters.add(waits=1, wait_time_total=waited)

    def _raise_timeout(self, waited: float) -> NoReturn:
        state = self.poolshift_state
        if state is None:
            super()._raise_timeout(waited)
        state.counters.add(waits=1, wait_time_total=waited, timeouts=1)
        message = state.timeout_message()
        logger.warning("pool timeout: %s", message)
        raise PoolTimeoutError(message) from None

    def recreate(self) -> QueuePool:
        # engine.dispose() (and fork handling) recreate the pool: keep the same counters.
        pool = super().recreate()
        pool.poolshift_state = self.poolshift_state  # type: ignore[attr-defined]
        return pool


def install(engine: Engine, state: PoolState) -> None:
    """Attach ``state`` to the engine's pool and register the listeners."""
    engine.pool.poolshift_state = state  # type: ignore[attr-defined]
    dialect = engine.dialect
    # Listeners read state.counters on each event (not a captured local) because a forked child swaps in
    # fresh counters: the inherited ones describe the parent, and their lock may have been held at fork.

    @event.listens_for(engine.pool, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        restore_plain_psycopg2_typecasters(dbapi_connection)
        record.info[_BASELINE] = Baseline.of(dbapi_connection)
        record.info[_PID] = os.getpid()
        lifetime = record.record_info
        if lifetime is not None:
            if lifetime.get(_EVER_CONNECTED) and not lifetime.pop(_WAS_INVALIDATED, False):
                state.counters.add(recycled=1)
            lifetime[_EVER_CONNECTED] = True
        state.counters.add(connections_created=1)

    @event.listens_for(engine.pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        """Validate only connections idle longer than ``ping_after`` seconds.

        SQLAlchemy's ``pool_pre_ping`` costs a round trip on *every* checkout. HikariCP skips validation
        for connections used within the last 500 ms: such a connection just proved itself alive, and the
        rare one that died in between fails like any mid-request disconnect (which
        ``execute_with_pool_connection`` retries). A connection idle longer, where firewalls, PgBouncer
        and failovers strike, is pinged; a failed ping raises DisconnectionError, on which the pool
        replaces the connection transparently.
        """
        info = record.info
        if info.get(_PID) != os.getpid():
            raise exc.DisconnectionError("connection inherited from the parent process after fork()")
        last_returned = info.get(_LAST_RETURNED)
        counters = state.counters
        if last_returned is None:
            counters.on_checkout(reused=False)
            return
        if state.settings.pre_ping and time.monotonic() - last_returned >= state.ping_after:
            _ping(dialect, dbapi_connection, counters)
        counters.on_checkout(reused=True)

    @event.listens_for(engine.pool, "reset")
    def _on_reset(dbapi_connection: Any, record: ConnectionPoolEntry, reset_state: Any) -> None:
        if reset_state.terminate_only:
            return  # detached: SQLAlchemy closes it right after
        info = record.info
        baseline = info.get(_BASELINE)
        if info.get(_PID) != os.getpid():
            reason: str | None = "connection inherited from the parent process after fork()"
        elif baseline is None:
            reason = "connection not opened by this pool"
        else:
            reason = reset_connection(dbapi_connection, baseline)
        if reason is None:
            info[_LAST_RETURNED] = time.monotonic()
            return
        logger.debug("discarding a connection to %s: %s", state.display_url, reason)
        info[_DISCARDING] = True
        state.counters.add(discarded_dirty=1)
        record.invalidate()  # closes it now; the record reconnects on its next checkout

    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        state.counters.on_checkin()

    @event.listens_for(engine.pool, "invalidate")
    def _on_invalidate(dbapi_connection: Any, record: ConnectionPoolEntry, exception: Any) -> None:
        lifetime = record.record_info
        if lifetime is not None:
            lifetime[_WAS_INVALIDATED] = True
        if not record.info.pop(_DISCARDING, False):
            state.counters.add(invalidated=1)


def _ping(dialect: Any, dbapi_connection: Any, counters: PoolCounters) -> None:
    counters.add(pings=1)
    try:
        dialect.do_ping(dbapi_connection)
    except psycopg2.Error as error:
        counters.add(ping_failures=1)
        # Any failure means the connection is unusable: let the pool replace it.
        raise exc.DisconnectionError(f"pre-ping failed: {type(error).__name__}") from None
