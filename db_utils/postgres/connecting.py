"""How a pool opens connections: at most ``max_connecting`` at once, and ``min_idle`` ahead of demand.

Opening a PostgreSQL connection is a scram handshake that costs CPU on both sides. A cold pool hit by a
burst would otherwise start one handshake per waiting thread at the same moment; they then share the CPUs
and all finish late, so no request is served until most of them are done. :class:`ConnectGate` lets a
few handshakes run at once (psycopg_pool grows through a few background workers for the same reason).
A checkout that finds no idle connection and no free attempt slot does not queue at the gate: it waits
in the pool's line (:class:`~db_utils.postgres.fair_queue.FairQueuePool`) and takes whatever comes first,
a returned connection or a slot to open one, which the line gets each time a new connection is made.
Only the warm-up and reconnects of replaced connections ever wait at the gate itself.

:class:`WarmUp` opens ``min_idle`` connections on a daemon thread when the pool is created, as
psycopg_pool's ``min_size`` and HikariCP's ``minimumIdle`` do, so the first requests find connections
ready. It never blocks a caller: a checkout that finds no idle connection opens its own (slot allowing),
and a connection the warm-up finishes goes to the oldest waiting checkout, if any. A failure is logged
(without the password) and ends the warm-up; later checkouts connect on demand as if there had been none.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("db_utils.pool")

_Creator = Callable[[Any], Any]


class ConnectGate:
    """Lets at most ``limit`` connection attempts run at once; the others wait for a slot.

    ``connecting`` and ``queued`` (read by ``pool_status()``) are the attempts in flight and waiting;
    both change only with ``_slots`` held, the condition every waiting attempt sleeps on.
    """

    __slots__ = ("_slots", "connecting", "limit", "queued")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.connecting = 0
        self.queued = 0
        self._slots = threading.Condition(threading.Lock())

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's attempts are not running here, and their lock may be held."""
        self.connecting = 0
        self.queued = 0
        self._slots = threading.Condition(threading.Lock())

    def wrap(self, creator: _Creator) -> _Creator:
        """``creator`` behind the gate.

        The wait has no deadline of its own: every attempt ahead ends, by connecting or by failing, and
        libpq's ``connect_timeout`` bounds each (``DB_POOL_TIMEOUT`` is about free connections, and a
        short one must not turn a connect that merely waited its turn into an error).
        """

        def gated(record: Any) -> Any:
            self._enter()
            try:
                return creator(record)
            finally:
                self._leave()

        return gated

    def _enter(self) -> None:
        with self._slots:
            self.queued += 1
            try:
                self._slots.wait_for(lambda: self.connecting < self.limit)
            finally:
                self.queued -= 1
            self.connecting += 1

    def _leave(self) -> None:
        with self._slots:
            self.connecting -= 1
            self._slots.notify()


class WarmUp:
    """Opens connections into ``pool`` on a daemon thread until it holds ``target``; see the module doc.

    ``_lock`` guards ``_stopped`` together with handing a finished connection to the pool, so that
    :meth:`stop` (called by the pool's ``dispose()``) either comes before the hand-over, and the
    connection is closed instead, or after it, and ``dispose()`` closes it with the other idle ones.
    """

    def __init__(self, pool: Any, target: int, display_url: str, password: str | None) -> None:
        self._pool = pool
        self._target = target
        self._display_url = display_url
        self._password = password
        self._lock = threading.Lock()
        self._stopped = False
        self.thread = threading.Thread(target=self._run, name="poolshift-warm-up", daemon=True)

    def start(self) -> WarmUp:
        self.thread.start()
        return self

    def stop(self) -> None:
        """No connection is added after this returns; one being opened is closed when it is ready."""
        with self._lock:
            self._stopped = True

    def _run(self) -> None:
        pool = self._pool
        while not self._stopped and pool.size() + pool._overflow < self._target:
            if not pool._inc_overflow():  # the pool is at its bound: demand got there first
                return
            try:
                record = pool._create_connection()
            except Exception as error:
                pool._dec_overflow()
                self._log_failure(error)
                return
            if not self._hand_over(record):
                record.close()
                pool._dec_overflow()
                return
            pool._open_for_oldest_waiter()  # more threads waiting: let the line grow the pool too

    def _hand_over(self, record: Any) -> bool:
        """Give ``record`` to the pool (its oldest waiting checkout, else idle); False once stopped."""
        with self._lock:
            if self._stopped:
                return False
            self._pool._do_return_conn(record)
            return True

    def _log_failure(self, error: BaseException) -> None:
        text = str(error).strip()
        if self._password:
            text = text.replace(self._password, "***")
        logger.warning(
            "warm-up of %s stopped: %s: %s (checkouts will connect on demand)",
            self._display_url,
            type(error).__name__,
            text,
        )
