"""The least Python keeping db_utils' per-op guarantees: a yardstick for the PostgreSQL op cost, not a pool.

``bench/bench_postgres.py`` times it and ``bench/callgrind_postgres.py --split`` counts it beside
``execute_with_pool``. It does, per op, only what
every one of those guarantees needs, written as directly as Python allows, and nothing of SQLAlchemy's
``QueuePool`` (records, events, overflow, invalidation, recycling) or of the registry (pool lookup,
counters, settings):

- checkout: the most recently returned idle connection, taken without a lock (as ``lending.lend``); not
  closed, its socket quiet (``poll(0)``: a backend terminated while idle is caught before use), pinged
  if idle past the window (as db_utils: in a benchmark round, only its first op); the borrower's call
  site and the lease's start recorded (leak and exhaustion reports); a new handle (so a closed handle
  stays closed) with a weak reference whose callback returns a dropped handle's connection, in the lease
  registry;
- the query: the handle's cursor, made directly in the tracking class (statement tracking), holding the
  handle, weakly listed in the lease so it can be closed with it; the tracked ``execute``; the commit;
- return: out of the registry, the handle closed, the transaction checked, the unexposed read-back
  (``reset.UNEXPOSED_STATE``), the return time, then back into the idle queue under its lock.

Whatever db_utils spends above this is the cost of building on ``QueuePool`` and of its extras; what this
spends above the ``persistent + rollback`` limit is what the guarantees themselves cost in CPython.
"""

from __future__ import annotations

import select
import threading
import time
import weakref
from collections import deque
from sys import _getframe
from typing import Any

import psycopg2
import psycopg2.extensions as pgext

from db_utils.postgres.driver import PLAIN_CURSOR_CLASS, TrackedConnection
from db_utils.postgres.reset import UNEXPOSED_STATE

_IDLE = pgext.TRANSACTION_STATUS_IDLE
_IN_TRANSACTION = (pgext.TRANSACTION_STATUS_INTRANS, pgext.TRANSACTION_STATUS_INERROR)
_PING_AFTER = 0.5
_monotonic = time.monotonic
_weak = weakref.ref
_new_cursor = pgext.connection.cursor
_TRACKED_CURSOR = PLAIN_CURSOR_CLASS[TrackedConnection]


class _Lease:
    """One connection of the floor pool and its current loan."""

    __slots__ = ("cursors", "last_returned", "poller", "pristine", "raw", "ref", "since", "where")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.poller = select.poll()
        self.poller.register(raw.fileno(), select.POLLIN)
        self.pristine: tuple[Any, ...] = (0, pgext.STATUS_READY, [], [], dict(vars(raw)))
        self.last_returned = _monotonic()
        self.cursors: list[Any] = []
        self.ref: Any = None
        self.since = 0.0
        self.where: Any = None


class _Handle:
    __slots__ = ("__weakref__", "_lease", "_raw")

    _raw: Any  # the real connection; None once closed
    _lease: _Lease

    def cursor(self) -> Any:
        raw = self._raw
        if raw is None:
            raise psycopg2.InterfaceError("connection already closed")
        cursor = _new_cursor(raw, None, _TRACKED_CURSOR)
        cursor.poolshift_lease = self
        self._lease.cursors.append(_weak(cursor))
        return cursor


def _ping(raw: Any) -> None:
    """db_utils' ping of a connection idle past the window (``SELECT 1`` in autocommit: no ``BEGIN``)."""
    raw.autocommit = True
    try:
        with raw.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        raw.autocommit = False


class FloorPool:
    """A single-process pool of ``size`` connections doing only the per-op work described above."""

    def __init__(self, dsn: str, size: int = 1) -> None:
        self._idle = deque(
            _Lease(psycopg2.connect(dsn, connection_factory=TrackedConnection)) for _ in range(size)
        )
        self._lock = threading.Lock()
        self._outstanding: dict[Any, _Lease] = {}

    def execute(self, operation: Any) -> Any:
        """``operation(handle)``, committed, then the connection returned (as ``execute_with_pool``)."""
        lease = self._idle.pop()  # a real pool waits here when empty; the yardstick never runs dry
        raw = lease.raw
        now = _monotonic()
        if raw.closed or lease.poller.poll(0):
            raise RuntimeError("the yardstick has no slow path: its connection must stay open")
        if now - lease.last_returned >= _PING_AFTER:  # idle too long: one round trip, as db_utils pings
            _ping(raw)
        caller = _getframe(1)
        lease.where = (caller.f_code, caller.f_lasti)
        lease.since = now
        handle = _Handle()
        handle._raw = raw
        handle._lease = lease
        # No local keeps the weak reference: dropped from the registry at return, it dies before the handle.
        lease.ref = _weak(handle, self._dropped)
        self._outstanding[lease.ref] = lease
        try:
            result = operation(handle)
            raw.commit()
        finally:
            self._give_back(handle, lease)
        return result

    def _give_back(self, handle: _Handle, lease: _Lease) -> None:
        cursors = lease.cursors
        if cursors:
            for cursor_ref in cursors:
                cursor = cursor_ref()
                if cursor is not None and not cursor.closed:
                    cursor.close()
            cursors.clear()
        handle._raw = None
        self._outstanding.pop(lease.ref, None)
        lease.ref = None
        raw = lease.raw
        status = raw.get_transaction_status()
        if status in _IN_TRANSACTION:
            raw.rollback()
            status = raw.get_transaction_status()
        if status != _IDLE or UNEXPOSED_STATE(raw) != lease.pristine:
            raise RuntimeError("the yardstick has no reset: its operations must leave nothing behind")
        lease.last_returned = _monotonic()
        with self._lock:
            self._idle.append(lease)

    def _dropped(self, ref: Any) -> None:
        raise RuntimeError("the yardstick's handles are never dropped")

    def close(self) -> None:
        for lease in self._idle:
            lease.raw.close()
