"""The SQLAlchemy pool events and the pool subclass that make a pool observable and safe to share.

Listeners (installed once per engine, they survive ``engine.dispose()`` because SQLAlchemy hands the same
dispatcher to the recreated pool):

- ``connect``: end the connection's opening phase (see :mod:`db_utils.postgres.driver`), restore
  plain-psycopg2 typecasters, remember the connection's baseline state, pid and database; count creations
  and recycles.
- ``checkout``: refuse a connection whose socket shows the server closed it (no round trip), validate
  one that sat idle longer than ``ping_after`` with a ping bounded by ``ping_timeout`` (HikariCP's
  trick, see :func:`check_out`), refuse connections inherited across ``fork()``; count checkouts and
  reuses.
- ``reset`` (SQLAlchemy's own reset is switched off with ``pool_reset_on_return=None``): run
  :func:`db_utils.postgres.reset.reset_connection`; a connection that cannot be reset is invalidated here,
  never raised about (a raising reset listener makes SQLAlchemy log an ERROR).
- ``invalidate``: count broken connections.

Checkins (of connections whose checkout was counted) are counted by
:meth:`InstrumentedQueuePool._return_conn`, the call SQLAlchemy makes right after the ``checkin`` event
(a listener would cost an event dispatch on every return).

Waits and timeouts have no event: :class:`InstrumentedQueuePool` counts them from
:class:`~db_utils.postgres.fair_queue.FairQueuePool`'s wait and turns the timeout into
:class:`PoolTimeoutError` naming size, overflow, timeout and a hint.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, NoReturn

import psycopg2
import psycopg2.extensions
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from db_utils.postgres.connecting import ConnectGate, WarmUp
from db_utils.postgres.deadline import Deadline
from db_utils.postgres.driver import plain_cursor, restore_plain_psycopg2_typecasters
from db_utils.postgres.fair_queue import FairQueuePool
from db_utils.postgres.leases import holders, watch_for_leaks
from db_utils.postgres.lifecycle import LineWatch
from db_utils.postgres.reset import Baseline, is_pristine, reset_connection
from db_utils.postgres.settings import PoolSettings
from db_utils.postgres.upstream import UpstreamProbe
from db_utils.stats import PoolCounters

logger = logging.getLogger("db_utils.pool")

# Keys in ConnectionPoolEntry.info (cleared by SQLAlchemy whenever the record reconnects, so their
# absence means "fresh connection") and record_info (kept for the record's whole life).
FACTS = "poolshift_facts"  # the connection's ConnectionFacts
_DISCARDING = "poolshift_discarding"
_EVER_CONNECTED = "poolshift_ever_connected"
_WAS_INVALIDATED = "poolshift_was_invalidated"
_CONNECTED_AT = "poolshift_connected_at"  # time.time() of the record's latest connect, as SQLAlchemy's
_CHECKED_OUT = "poolshift_checked_out"  # the checkout event ran and was counted; the checkin must be too


# os.getpid() is a system call (glibc stopped caching it), and the pid is compared on every checkout and
# return; it only changes in a forked child, where the hook below sets it before anything else runs there.
this_process = os.getpid()


def _note_pid_after_fork() -> None:
    global this_process  # noqa: PLW0603 - set once per process, read on the hot path
    this_process = os.getpid()


os.register_at_fork(after_in_child=_note_pid_after_fork)

_monotonic = time.monotonic


class ConnectionFacts:
    """What the pool knows about one open connection, kept in its record's ``info`` under :data:`FACTS`
    (SQLAlchemy clears ``info`` when the record reconnects: a reconnected record gets new facts).

    One object instead of one ``info`` key per fact: checkout and return read it once, then slots.
    """

    __slots__ = ("baseline", "exposed", "last_returned", "loan", "pid", "poller")

    def __init__(self, connection: Any) -> None:
        #: The state a reset must come back to (see :mod:`db_utils.postgres.reset`).
        self.baseline = Baseline.of(connection)
        #: The process that opened the connection: a forked child must never use it.
        self.pid = this_process
        #: The poll object over the connection's socket (see :func:`validate`); None: no socket.
        self.poller = _poller(connection)
        #: ``time.monotonic()`` of its latest return to the pool; None until the first (a fresh connection).
        self.last_returned: float | None = None
        #: The lending module's :class:`~db_utils.postgres.lending.Loan` of this connection, once lent.
        self.loan: Any = None
        #: Whether a borrower's code ever reached the real connection object, for good once it has (see
        #: ``proxy.PooledConnection.expose``): from the start for a class with the application's own
        #: methods in it (a ``connection_factory``), which run with the real connection as ``self``.
        self.exposed = not getattr(type(connection), "poolshift_trusted", False)


class PoolTimeoutError(exc.TimeoutError, psycopg2.OperationalError):  # type: ignore[misc]
    """No connection became free within the pool timeout.

    Also a ``psycopg2.OperationalError``: a migrated helper's ``except psycopg2.OperationalError: return
    None`` (the legacy contract for "no connection") must still catch it, as it caught a failed connect.
    It stays a subclass of SQLAlchemy's ``TimeoutError`` for code written against the pool.
    """


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
    #: What the pool's first connection found at the other end (see :mod:`db_utils.postgres.upstream`).
    upstream: UpstreamProbe | None = None
    #: Idle time from which a checkout pings: ``settings.ping_after``, infinite without ``pre_ping``
    #: (one comparison at checkout instead of two settings reads).
    ping_after: float = field(init=False)

    def __post_init__(self) -> None:
        self.ping_after = self.settings.ping_after if self.settings.pre_ping else float("inf")

    def timeout_message(self, held_by: str = "") -> str:
        s = self.settings
        where = f"; held by {held_by}" if held_by else ""
        return (
            f"no pooled connection free for {self.display_url} within the pool timeout: pool size "
            f"{s.pool_size}, max overflow {s.max_overflow}, timeout {s.timeout:g} s (all "
            f"{s.pool_size + s.max_overflow} connections checked out{where}). Connections are probably held "
            "too long or leaked (not closed); otherwise raise DB_POOL_SIZE/DB_MAX_OVERFLOW within the "
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
    #: The listener deques ``lending.lend`` reads on every checkout (see :func:`keep_listener_deques`).
    listener_deques: tuple[Collection[Any], ...] | None = None

    def attach(self, state: PoolState) -> None:
        """Make this pool ``state``'s: counters and the connect cap (every connect and reconnect)."""
        self.poolshift_state = state
        self.connect_gate = ConnectGate(state.settings.max_connecting)
        self._invoke_creator = self.connect_gate.wrap(self._invoke_creator)  # type: ignore[assignment]

    def _return_conn(self, record: ConnectionPoolEntry) -> None:
        # What a "checkin" listener would do, without the event dispatch: SQLAlchemy calls this from the
        # record's checkin right after that event, for every checkin and only for checkins.
        # Only checkins of counted checkouts: SQLAlchemy also "checks in" a record whose connect or
        # reconnect failed during checkout.
        state = self.poolshift_state
        lifetime = record.record_info
        if state is not None and lifetime is not None and lifetime.pop(_CHECKED_OUT, False):
            state.counters.count_checkin()
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line_watch = LineWatch()
        # Every connect and reconnect of this pool's records goes through _invoke_creator: count failures.
        create = self._invoke_creator

        def counting_creator(record: Any) -> Any:
            try:
                return create(record)
            except Exception:
                state = self.poolshift_state
                if state is not None:
                    state.counters.add(connect_failures=1)
                raise

        self._invoke_creator = counting_creator  # type: ignore[assignment]

    def _record_wait(self, waited: float) -> None:
        state = self.poolshift_state
        if state is not None:
            state.counters.add(waits=1, wait_time_total=waited)
            self.line_watch.line_changed(self, state)

    def _raise_timeout(self, waited: float) -> NoReturn:
        state = self.poolshift_state
        if state is None:
            super()._raise_timeout(waited)
        state.counters.add(waits=1, wait_time_total=waited, timeouts=1)
        self.line_watch.line_changed(self, state)
        message = state.timeout_message(holders(self))
        logger.warning("pool timeout: %s", message)
        raise PoolTimeoutError(message) from None

    def _line_changed(self) -> None:
        state = self.poolshift_state
        if state is not None:
            self.line_watch.line_changed(self, state)

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
    if state.settings.leak_threshold > 0:
        watch_for_leaks()
    # Listeners read state.counters on each event (not a captured local) because a forked child swaps in
    # fresh counters: the inherited ones describe the parent, and their lock may have been held at fork.

    @event.listens_for(engine.pool, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # The dialect's listeners (registered before this one) have run: the borrower's class takes over.
        dbapi_connection.poolshift_opening = False
        restore_plain_psycopg2_typecasters(dbapi_connection)
        state.database = dbapi_connection.info.dbname
        record.info[FACTS] = ConnectionFacts(dbapi_connection)
        lifetime = record.record_info
        if lifetime is not None:
            if lifetime.get(_EVER_CONNECTED) and not lifetime.pop(_WAS_INVALIDATED, False):
                # Replaced without an invalidate event: for age (recycle), or because a disconnect
                # elsewhere marked every older connection of the pool as suspect (pool._invalidate).
                if lifetime.get(_CONNECTED_AT, 0.0) < getattr(engine.pool, "_invalidate_time", 0):
                    state.counters.add(invalidated=1)
                else:
                    state.counters.add(recycled=1)
            lifetime[_EVER_CONNECTED] = True
            lifetime[_CONNECTED_AT] = time.time()
        state.counters.add(connections_created=1)

    @event.listens_for(engine.pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        check_out(state, dbapi_connection, record)

    @event.listens_for(engine.pool, "reset")
    def _on_reset(dbapi_connection: Any, record: ConnectionPoolEntry, reset_state: Any) -> None:
        if not reset_state.terminate_only:  # detached: SQLAlchemy closes it right after
            reset_on_return(state, dbapi_connection, record)

    @event.listens_for(engine.pool, "invalidate")
    def _on_invalidate(dbapi_connection: Any, record: ConnectionPoolEntry, exception: Any) -> None:
        lifetime = record.record_info
        if lifetime is not None:
            lifetime[_WAS_INVALIDATED] = True
        if not record.info.pop(_DISCARDING, False):
            state.counters.add(invalidated=1)

    keep_listener_deques(engine.pool)  # now, while no other thread can reach the pool


def keep_listener_deques(pool: Any) -> tuple[Collection[Any], ...]:
    """The deques holding ``pool``'s checkout, reset and checkin listeners, its own and its class's:
    ``(checkout, reset, checkout_class, reset_class, checkin, checkin_class)``, kept on the pool for
    ``lending.lend``'s test on every checkout and return.

    Reading them through ``pool.dispatch`` each time costs more than the rest of that test: the dispatch
    object's attributes go through its ``__getattr__`` hook. They can be kept because SQLAlchemy changes
    them in place: ``event.listen``/``event.remove`` on the pool append to and remove from its
    collection's ``listeners`` deque, and on the ``Pool`` class (or a subclass) from the class-level deque
    that the pool's collection holds as ``parent_listeners``. The one exception is a pool with no
    listener of a kind yet: its dispatch holds a placeholder, replaced by a new collection at the first
    ``event.listen``. ``for_modify`` makes that collection now. :func:`install` calls this before the
    pool is shared (two threads making the same collection at once could each keep their own); a pool
    SQLAlchemy rebuilds (``engine.dispose()``) copies the three collections while it is built, so the
    later call ``lend`` makes for it finds nothing left to replace.
    """
    dispatch = pool.dispatch
    for name in ("checkout", "reset", "checkin"):
        getattr(dispatch, name).for_modify(dispatch)
    checkout, reset, checkin = dispatch.checkout, dispatch.reset, dispatch.checkin
    deques = (
        checkout.listeners,
        reset.listeners,
        checkout.parent_listeners,
        reset.parent_listeners,
        checkin.listeners,
        checkin.parent_listeners,
    )
    pool.listener_deques = deques
    return deques


def reset_on_return(state: PoolState, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    """Reset a returned connection for its next borrower, or invalidate it (closed now, reconnected at its
    next checkout) when it cannot be reset. Never raises about the connection: a failure is a reason.

    :meth:`~db_utils.postgres.lending.Loan.give_back` makes the everyday case's test inline (a
    connection of this process, :func:`~db_utils.postgres.reset.is_pristine`) and calls this otherwise."""
    facts: ConnectionFacts | None = record.info.get(FACTS)
    if facts is None:
        reason: str | None = "connection not opened by this pool"
    elif facts.pid != this_process:
        reason = "connection inherited from the parent process after fork()"
    elif is_pristine(dbapi_connection, facts.baseline):
        reason = None
    else:
        reason = reset_connection(dbapi_connection, facts.baseline)
    if reason is None:
        facts.last_returned = _monotonic()  # type: ignore[union-attr]
        return
    logger.debug("discarding a connection to %s: %s", state.display_url, reason)
    record.info[_DISCARDING] = True
    state.counters.add(discarded_dirty=1)
    record.invalidate()  # closes it now; the record reconnects on its next checkout


def check_out(state: PoolState, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    """The ``checkout`` listener's work (SQLAlchemy's own checkout path): :func:`validate`, counted; the
    checkin is counted by :meth:`InstrumentedQueuePool._return_conn`."""
    facts: ConnectionFacts | None = record.info.get(FACTS)
    reused = validate(state, dbapi_connection, facts)
    if facts is not None:
        facts.exposed = True  # this path hands the application the real connection (inside its fairy)
    counters = state.counters
    counters.count_checkout()
    if not reused:  # counted after its checkout (see PoolCounters.snapshot)
        counters.count_first_use()
    lifetime = record.record_info
    if lifetime is not None:
        lifetime[_CHECKED_OUT] = True


def validate(state: PoolState, dbapi_connection: Any, facts: ConnectionFacts | None) -> bool:
    """Validate a reused connection without a round trip, and with one only if idle past ``ping_after``;
    True if the connection was used before (a reuse).

    SQLAlchemy's ``pool_pre_ping`` costs a round trip on *every* checkout. HikariCP skips validation for
    connections used within the last 500 ms: such a connection just proved itself alive. One whose
    backend was terminated in between is caught without a round trip: the server's goodbye (or a reset)
    makes the idle socket readable at once (go-sql-driver's ``conncheck``). A connection idle longer,
    where firewalls, PgBouncer and failovers strike, is pinged, within ``ping_timeout``. A failed check
    raises DisconnectionError, on which the pool replaces the connection transparently.

    :func:`~db_utils.postgres.lending.lend` makes the everyday case's tests inline (the same ones, in the
    same order) and calls this when one of them fails.
    """
    if facts is None or facts.pid != this_process:
        raise exc.DisconnectionError("connection inherited from the parent process after fork()")
    last_returned = facts.last_returned
    if last_returned is None:
        return False
    # Is the idle socket readable or in error right now (closed or reset)? An idle connection, reset on
    # return, has nothing to read: the server only talks when asked (LISTEN, which leaves unsolicited
    # messages, marks the session for DISCARD ALL). Readable therefore means the server's FATAL goodbye
    # or EOF. A non-blocking poll costs no round trip.
    poller = facts.poller
    try:
        closed = poller is None or dbapi_connection.closed or bool(poller.poll(0))
    except (OSError, ValueError):  # no socket any more
        closed = True
    if closed:
        raise exc.DisconnectionError("the server closed the connection while it was idle")
    if _monotonic() - last_returned >= state.ping_after:
        _ping(dbapi_connection, state.counters, state.settings.ping_timeout)
    return True


_READABLE = select.POLLIN | select.POLLPRI


def _poller(dbapi_connection: Any) -> Any:
    """A poll object watching the connection's socket for "readable": made once per connection (its
    socket never changes), so the check at each checkout is one system call and no allocation."""
    try:
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), _READABLE)
    except (OSError, ValueError, psycopg2.Error):  # no socket: the checkout check says "closed"
        return None
    return poller


_AUTOCOMMIT: Any = psycopg2.extensions.connection.autocommit


def _ping(dbapi_connection: Any, counters: PoolCounters, timeout: float) -> None:
    """``SELECT 1`` on a plain cursor, within ``timeout``: a user's connection class may refuse
    ``cursor()`` (``LoggingConnection`` before ``initialize()``) or return rows of another shape."""
    counters.add(pings=1)
    guard = Deadline(dbapi_connection.fileno(), timeout)
    try:
        with guard:
            # In autocommit mode (a client-side flag: no round trip) the ping is one round trip with no
            # BEGIN, and leaves no transaction open: otherwise the borrower's first
            # ``conn.autocommit = True`` fails ("set_session cannot be used inside a transaction").
            # The base class's attribute: a connection class may guard its own (PgBouncer mode).
            switch = not _AUTOCOMMIT.__get__(dbapi_connection)
            if switch:
                _AUTOCOMMIT.__set__(dbapi_connection, True)
            try:
                with plain_cursor(dbapi_connection) as cursor:
                    cursor.execute("SELECT 1")
            finally:
                if switch:
                    _AUTOCOMMIT.__set__(dbapi_connection, False)
    except psycopg2.Error as error:
        if not guard.fired:
            counters.add(ping_failures=1)
            # Any failure means the connection is unusable: let the pool replace it.
            raise exc.DisconnectionError(f"pre-ping failed: {type(error).__name__}") from None
    if guard.fired:
        counters.add(ping_failures=1)
        # A server (or path) that does not answer at all hangs every connection to it, not just this one:
        # every connection older than now is replaced at its next checkout, through connect_timeout,
        # instead of being handed out within the ping window to hang its caller.
        raise exc.InvalidatePoolError(
            f"pre-ping failed: no answer within {timeout:g} s (DB_POOL_PING_TIMEOUT)"
        )
