"""The SQLAlchemy pool events and the pool subclass that make a pool observable and safe to share.

Listeners (installed once per engine, they survive ``engine.dispose()`` because SQLAlchemy hands the same
dispatcher to the recreated pool):

- ``connect``: restore plain-psycopg2 typecasters, remember the connection's baseline state and pid;
  count creations and recycles.
- ``checkout``: validate a connection that sat idle longer than ``ping_after`` (HikariCP's trick, see
  :func:`_on_checkout`), refuse connections inherited across ``fork()``; count checkouts and reuses.
- ``reset`` (SQLAlchemy's own reset is switched off with ``pool_reset_on_return=None``): run
  :func:`db_utils.postgres.reset.reset_connection`; a connection that cannot be reset is invalidated here,
  never raised about (a raising reset listener makes SQLAlchemy log an ERROR).
- ``invalidate``: count broken connections.

Checkins are counted by :meth:`InstrumentedQueuePool._return_conn`, the call SQLAlchemy makes right
after the ``checkin`` event (a listener would cost an event dispatch on every return).

Waits and timeouts have no event: :class:`InstrumentedQueuePool` counts them from
:class:`~db_utils.postgres.fair_queue.FairQueuePool`'s wait and turns the timeout into
:class:`PoolTimeoutError` naming size, overflow, timeout and a hint.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

import psycopg2
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from db_utils.postgres.connecting import ConnectGate, WarmUp
from db_utils.postgres.driver import restore_plain_psycopg2_typecasters
from db_utils.postgres.fair_queue import FairQueuePool
from db_utils.postgres.reset import Baseline, reset_connection
from db_utils.postgres.settings import PoolSettings
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


# os.getpid() is a system call (glibc stopped caching it), and the pid is compared on every checkout and
# return; it only changes in a forked child, where the hook below sets it before anything else runs there.
_this_process = os.getpid()


def _note_pid_after_fork() -> None:
    global _this_process  # noqa: PLW0603 - set once per process, read on the hot path
    _this_process = os.getpid()


os.register_at_fork(after_in_child=_note_pid_after_fork)


class PoolTimeoutError(exc.TimeoutError):
    """No connection became free within the pool timeout (a subclass of SQLAlchemy's TimeoutError)."""


@dataclass
class PoolState:
    """Everything poolshift knows about one engine's pool; ``display_url`` is the only URL form shown."""

    display_url: str
    settings: PoolSettings
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


class InstrumentedQueuePool(FairQueuePool):
    """Fair QueuePool that counts waits and timeouts and raises :class:`PoolTimeoutError` with context.

    It also caps its simultaneous connection attempts (:class:`~db_utils.postgres.connecting.ConnectGate`)
    and stops its warm-up, if one runs, when disposed.
    """

    poolshift_state: PoolState | None = None
    connect_gate: ConnectGate | None = None
    warm_up: WarmUp | None = None

    def attach(self, state: PoolState) -> None:
        """Make this pool ``state``'s: counters and the connect cap (every connect and reconnect)."""
        self.poolshift_state = state
        self.connect_gate = ConnectGate(state.settings.max_connecting)
        self._invoke_creator = self.connect_gate.wrap(self._invoke_creator)  # type: ignore[assignment]

    def _return_conn(self, record: ConnectionPoolEntry) -> None:
        # What a "checkin" listener would do, without the event dispatch: SQLAlchemy calls this from the
        # record's checkin right after that event, for every checkin and only for checkins.
        state = self.poolshift_state
        if state is not None:
            state.counters.on_checkin()
        super()._return_conn(record)

    def _may_open_now(self) -> bool:
        # A racy read, on purpose: the gate itself enforces the cap; this only decides whether a checkout
        # waits in line (served by whatever comes first) rather than queueing for an attempt slot.
        gate = self.connect_gate
        return gate is None or gate.connecting < gate.limit

    def dispose(self) -> None:
        warm_up = self.warm_up
        if warm_up is not None:
            warm_up.stop()
        super().dispose()

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
        if self.poolshift_state is not None:
            pool.attach(self.poolshift_state)  # type: ignore[attr-defined]
        return pool

    def _reset_after_fork(self) -> None:
        # The parent's warm-up thread and connection attempts do not exist in the child: nothing of theirs
        # may hold a slot or a lock here.
        super()._reset_after_fork()
        self.warm_up = None
        if self.connect_gate is not None:
            self.connect_gate.reset_after_fork()


def install(engine: Engine, state: PoolState) -> None:
    """Attach ``state`` to the engine's pool and register the listeners."""
    engine.pool.attach(state)  # type: ignore[attr-defined]
    dialect = engine.dialect
    # Listeners read state.counters on each event (not a captured local) because a forked child swaps in
    # fresh counters: the inherited ones describe the parent, and their lock may have been held at fork.

    @event.listens_for(engine.pool, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        restore_plain_psycopg2_typecasters(dbapi_connection)
        record.info[_BASELINE] = Baseline.of(dbapi_connection)
        record.info[_PID] = _this_process
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
        if info.get(_PID) != _this_process:
            raise exc.DisconnectionError("connection inherited from the parent process after fork()")
        last_returned = info.get(_LAST_RETURNED)
        counters = state.counters
        if last_returned is None:
            counters.on_checkout(reused=False)
            return
        if state.settings.pre_ping and time.monotonic() - last_returned >= state.settings.ping_after:
            _ping(dialect, dbapi_connection, counters)
        counters.on_checkout(reused=True)

    @event.listens_for(engine.pool, "reset")
    def _on_reset(dbapi_connection: Any, record: ConnectionPoolEntry, reset_state: Any) -> None:
        if reset_state.terminate_only:
            return  # detached: SQLAlchemy closes it right after
        info = record.info
        baseline = info.get(_BASELINE)
        if info.get(_PID) != _this_process:
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
