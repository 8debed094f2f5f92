"""The SQLAlchemy pool events and the pool subclass that make a pool observable and safe to share.

Listeners (installed once per engine, they survive ``engine.dispose()`` because SQLAlchemy hands the same
dispatcher to the recreated pool):

- ``connect``: end the connection's opening phase (see :mod:`db_utils.postgres.driver`), restore
  plain-psycopg2 typecasters, remember the connection's baseline state, pid and database; count creations
  and recycles.
- ``checkout``: validate a connection that sat idle longer than ``ping_after`` (HikariCP's trick, see
  :func:`_on_checkout`), refuse connections inherited across ``fork()``; count checkouts and reuses.
- ``reset`` (SQLAlchemy's own reset is switched off with ``pool_reset_on_return=None``): run
  :func:`db_utils.postgres.reset.reset_connection`; a connection that cannot be reset is invalidated here,
  never raised about (a raising reset listener makes SQLAlchemy log an ERROR).
- ``invalidate``: count broken connections.

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

from db_utils.postgres.driver import plain_cursor, restore_plain_psycopg2_typecasters
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


class PoolTimeoutError(exc.TimeoutError):
    """No connection became free within the pool timeout (a subclass of SQLAlchemy's TimeoutError)."""


@dataclass
class PoolState:
    """Everything poolshift knows about one engine's pool; ``display_url`` is the only URL form shown."""

    display_url: str
    settings: PoolSettings
    counters: PoolCounters = field(default_factory=PoolCounters)
    #: The database its connections are connected to, as the server reports it (None until the first).
    database: str | None = None
    #: ``time.monotonic()`` of the last checkout request (pools of ``db_utils.postgres.connect``: LRU).
    last_used: float = 0.0

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
    # Listeners read state.counters on each event (not a captured local) because a forked child swaps in
    # fresh counters: the inherited ones describe the parent, and their lock may have been held at fork.

    @event.listens_for(engine.pool, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # The dialect's listeners (registered before this one) have run: the borrower's class takes over.
        dbapi_connection.poolshift_opening = False
        restore_plain_psycopg2_typecasters(dbapi_connection)
        state.database = dbapi_connection.info.dbname
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
        if state.settings.pre_ping and time.monotonic() - last_returned >= state.settings.ping_after:
            _ping(dbapi_connection, counters)
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


def _ping(dbapi_connection: Any, counters: PoolCounters) -> None:
    """The dialect's ``do_ping`` (``SELECT 1``), on a plain cursor: a user's connection class may refuse
    ``cursor()`` (``LoggingConnection`` before ``initialize()``) or return rows of another shape."""
    counters.add(pings=1)
    try:
        with plain_cursor(dbapi_connection) as cursor:
            cursor.execute("SELECT 1")
    except psycopg2.Error as error:
        counters.add(ping_failures=1)
        # Any failure means the connection is unusable: let the pool replace it.
        raise exc.DisconnectionError(f"pre-ping failed: {type(error).__name__}") from None
