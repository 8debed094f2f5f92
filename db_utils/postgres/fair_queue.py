"""A QueuePool that serves waiting checkouts first come, first served.

SQLAlchemy's QueuePool puts a returned connection back into its queue and notifies a waiter; before that
waiter runs, the returning thread (or any newcomer) can take the connection again, so under contention
some threads finish fast and others starve (a high p99). :class:`FairQueuePool` hands a returned
connection straight to the oldest waiting thread instead, as psycopg_pool and HikariCP do.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from collections import deque
from typing import Any, Literal, NoReturn

from sqlalchemy import exc, util
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from sqlalchemy.util import queue as sqla_queue


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


class _IdleConnections(sqla_queue.Queue[ConnectionPoolEntry]):
    """QueuePool's queue of idle connections, used only without blocking: FairQueuePool does all waiting.

    The base class wakes a possible waiter on each put and get; nobody ever waits on this queue, so
    those notifications are skipped.
    """

    def put(self, item: ConnectionPoolEntry, block: bool = True, timeout: float | None = None) -> None:
        with self.mutex:
            if self._full():
                raise sqla_queue.Full
            self._put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> ConnectionPoolEntry:
        # FairQueuePool._do_get pops idle connections without this mutex: the queue may empty between a
        # test and the pop, so the pop itself decides.
        with self.mutex:
            try:
                return self._get()
            except IndexError:
                raise sqla_queue.Empty from None


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

    _queue_class = _IdleConnections

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handoff_lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()  # oldest first
        # The idle queue's own deque and its bound, for the fast paths of _do_get and _do_return_conn.
        idle = self._pool
        assert isinstance(idle, _IdleConnections)
        self._idle: deque[ConnectionPoolEntry] = idle.queue
        self._idle_limit = idle.maxsize if idle.maxsize > 0 else sys.maxsize
        self._lifo = idle.use_lifo
        _live_pools.add(self)

    def waiting(self) -> int:
        """How many checkouts are waiting in line for a connection right now."""
        with self._handoff_lock:
            return len(self._waiters)

    def _do_get(self) -> ConnectionPoolEntry:
        # Optimisation: the everyday case (nobody waits, a connection is idle) without the lock, the queue
        # object's calls and its mutex. Each deque operation is atomic, so no connection is handed out
        # twice; and a connection is only ever idle while nobody waits (every return and freed slot goes
        # to the oldest waiter, under the lock), so taking one here overtakes nobody. dispose() or another
        # checkout may empty the queue between the test and the pop, hence the IndexError.
        if not self._waiters:
            idle = self._idle
            if idle:
                try:
                    return idle.pop() if self._lifo else idle.popleft()
                except IndexError:
                    pass
        with self._handoff_lock:
            handed = self._take_without_waiting()
            if handed is None:
                waiter = _Waiter(self._handoff_lock)
                self._waiters.append(waiter)
        if handed is None:
            self._line_changed()  # only a checkout that waits: the line may have just formed
            started = time.monotonic()
            handed = self._wait_for_turn(waiter, started + self._timeout)
            waited = time.monotonic() - started
            if handed is None:
                self._raise_timeout(waited)
            self._record_wait(waited)
        if isinstance(handed, _NewConnectionSlot):
            return self._open_in_slot()
        return handed

    def close_idle(self) -> int:
        """Close every idle connection (checked-out ones are untouched); returns how many were closed.

        Unlike ``dispose()``, the pool stays in service with its accounting intact: each closed
        connection frees its slot, which goes to the oldest waiter if any.
        """
        idle: list[ConnectionPoolEntry] = []
        with self._handoff_lock:
            while True:
                try:
                    idle.append(self._pool.get(False))
                except sqla_queue.Empty:
                    break
        for record in idle:  # I/O outside the lock
            try:
                record.close()
            finally:
                self._dec_overflow()
        return len(idle)

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
        if self._may_open_now() and self._inc_overflow():
            return _NEW_CONNECTION
        return None

    def _may_open_now(self) -> bool:
        """Hook: may a checkout that found no idle connection start opening one right now?

        When not, it waits in line like everybody else; :meth:`_open_for_oldest_waiter` lets the line
        grow the pool when an attempt ends.
        """
        return True

    def _open_for_oldest_waiter(self) -> None:
        """A new connection was made: if threads wait, the oldest may open the next one (capacity allowing).

        Waiting threads are then served by whichever comes first, a returned connection or their own new
        one, as psycopg_pool's waiting clients are by its growing pool.
        """
        with self._handoff_lock:
            if self._waiters and self._may_open_now() and self._inc_overflow():
                self._hand_to_oldest(_NEW_CONNECTION)

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
            record = self._create_connection()
        except BaseException:
            with util.safe_reraise():
                self._dec_overflow()  # frees the slot: it goes to the oldest waiter, if any
            raise
        if self._waiters:  # unlocked peek: the common case (nobody waits) takes no lock
            self._open_for_oldest_waiter()
        return record

    def _hand_to_oldest(self, handed: _Handoff) -> bool:
        """Give ``handed`` to the oldest waiter and wake it; False if nobody waits (lock held)."""
        if not self._waiters:
            return False
        waiter = self._waiters.popleft()
        waiter.handed = handed
        waiter.wakeup.notify()
        return True

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        # Optimisation: acquire()/release() rather than ``with``, which looks up and binds the lock's
        # __enter__/__exit__ on every use.
        lock = self._handoff_lock
        lock.acquire()
        try:
            if self._waiters:
                self._hand_to_oldest(record)
                return
            # Optimisation: the queue's put() written out; every put happens under this lock, so the
            # length read and the append cannot be interleaved with another put.
            if len(self._idle) < self._idle_limit:
                self._idle.append(record)
                return
        finally:
            lock.release()
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

    def _line_changed(self) -> None:
        """Hook: a checkout joined the line (called outside the lock, by that checkout's thread)."""

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
        # (the registry recreates it), but a connection checked out across fork() may still be returned to it.
        self._handoff_lock = threading.Lock()
        self._waiters = deque()


# Every FairQueuePool alive, for the at-fork reset (weak: a disposed pool must still be collectable).
_live_pools: weakref.WeakSet[FairQueuePool] = weakref.WeakSet()


def _reset_pools_after_fork() -> None:
    for pool in list(_live_pools):
        pool._reset_after_fork()


os.register_at_fork(after_in_child=_reset_pools_after_fork)
