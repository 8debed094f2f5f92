"""Counters for every pool poolshift manages, and the registries behind ``pool_status()``/``dispose_pools()``.

Each kind of pool (PostgreSQL engines, SQLite pools, the HTTP pool manager) registers a *source*: a
function returning a JSON-serialisable dict of its current figures. ``pool_status()`` calls every source,
so a module that is never imported (say ``db_utils.http``) costs nothing and simply does not appear.
SQLite and HTTP register a *disposer* the same way, which ``dispose_pools()`` calls: an app that never
imported them never pays for them (their import cost, their at-fork hooks).

Pools also *notify* their lifecycle (:class:`PoolEvent`: created, exhausted, recovered, disposed) to the
listeners added with :func:`add_listener` (the monitor's log lines, for one). Only state changes notify,
never a checkout: a pool is exhausted when a checkout has to queue for a connection, which is already
the slow path.

Counters are plain numbers updated under one lock per :class:`PoolCounters`, exact under free-threaded
builds too. The PostgreSQL checkout/checkin path, where even an uncontended lock costs more than the rest of
the bookkeeping, counts with ``itertools.count`` instead (``count_checkout``...): each ``next()`` is one
atomic C call, and the counts are read only when a snapshot is taken. An everyday checkout and return count
once each; reuses are derived (checkouts minus first uses, counted on the slow path of a new connection).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

StatsSource = Callable[[], dict[str, Any]]
Disposer = Callable[[], object]

_sources: dict[str, StatsSource] = {}
_disposers: dict[str, Disposer] = {}
_sources_lock = threading.Lock()  # guards _sources and _disposers


def register_source(kind: str, source: StatsSource) -> None:
    """Register (or replace) the stats source of one kind of pool: ``postgres``, ``sqlite``, ``http``."""
    with _sources_lock:
        _sources[kind] = source


def register_disposer(kind: str, dispose: Disposer) -> None:
    """Register (or replace) what closes one kind of pool's idle connections, for ``dispose_pools()``."""
    with _sources_lock:
        _disposers[kind] = dispose


LifecycleEvent = Literal["created", "exhausted", "recovered", "disposed"]


#: Name of the single HTTP "pool" in status and lifecycle events (db_utils.http keeps one pool manager
#: per process).
HTTP_POOL_NAME = "urlopen"


@dataclass(frozen=True)
class PoolEvent:
    """One change in a pool's life, as the pool itself saw it happen.

    ``event``: ``created`` (the pool exists, no connection opened yet), ``exhausted`` (a checkout found
    every connection in use and queued for one), ``recovered`` (no checkout is queued any more: the
    last one was served or gave up), ``disposed`` (the pool was closed: ``dispose_pools()``, or evicted at
    ``DB_CONNECT_MAX_POOLS``). ``pool`` is the password-free name ``pool_status()`` uses; ``figures``
    the counts that explain the change (``active``, ``max``, ``waiting``, ``waits``, ``timeouts``...).
    """

    event: LifecycleEvent
    kind: str
    pool: str
    figures: Mapping[str, Any] = field(default_factory=dict)


PoolListener = Callable[[PoolEvent], object]

_listeners: tuple[PoolListener, ...] = ()  # replaced whole under _sources_lock; read without it
_listener_logger = logging.getLogger("db_utils.stats")


def add_listener(listener: PoolListener) -> Callable[[], None]:
    """Call ``listener(event)`` at every pool's lifecycle change; returns the function that removes it.

    The listener runs in the thread whose call changed the state (a checkout that queues,
    ``dispose_pools()``), so it must be quick and must not check out a connection itself. An exception it
    raises is logged on ``db_utils.stats`` and swallowed: a listener never breaks a pool.
    """
    global _listeners  # noqa: PLW0603 - a copy-on-write tuple, so notify() reads it without a lock
    with _sources_lock:
        _listeners = (*_listeners, listener)

    def remove() -> None:
        global _listeners  # noqa: PLW0603
        with _sources_lock:
            _listeners = tuple(known for known in _listeners if known is not listener)

    return remove


def notify(event: PoolEvent) -> None:
    """Tell every listener about ``event`` (nothing to do, and no lock taken, without listeners)."""
    for listener in _listeners:
        try:
            listener(event)
        except Exception:
            _listener_logger.exception("pool listener %r failed on %s", listener, event.event)


def collect() -> dict[str, dict[str, Any]]:
    """Every registered source's figures, keyed by kind."""
    with _sources_lock:
        sources = dict(_sources)
    return {kind: source() for kind, source in sorted(sources.items())}


def dispose_registered() -> None:
    """Call every registered disposer (the pools of every kind imported so far)."""
    with _sources_lock:
        disposers = list(_disposers.values())
    for dispose in disposers:
        dispose()


#: The figures of a connection pool (PostgreSQL and SQLite): counters, plus the ``checked_out`` gauge.
POOL_FIGURES: Mapping[str, float] = {
    "connections_created": 0,
    "checkouts": 0,
    "reuses": 0,
    "checkins": 0,
    "recycled": 0,
    "invalidated": 0,
    "discarded_dirty": 0,
    "waits": 0,
    "wait_time_total": 0.0,
    "timeouts": 0,
    "checked_out": 0,
    "pings": 0,
    "ping_failures": 0,
    "connect_failures": 0,
}


class PoolCounters:
    """The figures of one pool (or of the HTTP transport), under one lock; shared by every kind of pool.

    ``figures`` names each figure and its starting value; ``reuses`` counts uses served by an existing
    connection, and ``snapshot()`` adds ``reuse_rate`` = reuses / ``reuse_of`` (``checkouts`` for a pool,
    ``requests`` for HTTP), the figure that shows pooling is working (near 1.0 under steady load).
    ``tallies`` name per-key counts (HTTP's fallbacks by reason), reported as dicts.

    Each figure is an instance attribute (the fastest thing to increment), set from ``figures``.
    ``count_checkout``, ``count_first_use`` and ``count_checkin`` count without a lock (see the module
    docs); ``snapshot()`` adds their counts to ``checkouts``, ``reuses`` (checkouts that were not a
    connection's first use), ``checkins`` and ``checked_out``.
    """

    # The pool figures the checkout/checkin hot path updates by name (see POOL_FIGURES).
    checkouts: int
    checked_out: int
    reuses: int
    checkins: int

    def __init__(
        self,
        figures: Mapping[str, float] = POOL_FIGURES,
        *,
        reuse_of: str = "checkouts",
        tallies: tuple[str, ...] = (),
    ) -> None:
        clashes = [name for name in figures if hasattr(type(self), name)]
        if clashes:
            raise ValueError(f"figure names taken by PoolCounters itself: {clashes}")
        if reuse_of not in figures:
            raise ValueError(f"reuse_of={reuse_of!r} is not one of the figures")
        self._figures = figures
        self._reuse_of = reuse_of
        self._lock = threading.Lock()
        self._tallies: dict[str, Counter[str]] = {name: Counter() for name in tallies}
        for name, value in figures.items():
            setattr(self, name, value)
        self._counts = (itertools.count(), itertools.count(), itertools.count())
        self.count_checkout: Callable[[], int] = self._counts[0].__next__
        self.count_first_use: Callable[[], int] = self._counts[1].__next__
        self.count_checkin: Callable[[], int] = self._counts[2].__next__

    def fresh(self) -> PoolCounters:
        """Counters of the same shape, all at their starting values."""
        return PoolCounters(self._figures, reuse_of=self._reuse_of, tallies=tuple(self._tallies))

    def add(self, **deltas: float) -> None:
        """Add to several counters at once, atomically."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def tally(self, name: str, key: str, **deltas: float) -> None:
        """Count one ``key`` in the tally ``name`` and add ``deltas``, atomically."""
        with self._lock:
            self._tallies[name][key] += 1
            for figure, delta in deltas.items():
                setattr(self, figure, getattr(self, figure) + delta)

    def snapshot(self) -> dict[str, Any]:
        # Checkins and first uses before checkouts (each is counted after its checkout): a checkout between
        # the reads can only make checked_out and reuses larger, never negative.
        checkout_count, first_use_count, checkin_count = self._counts
        checkins, first_uses = _current(checkin_count), _current(first_use_count)
        checkouts = _current(checkout_count)
        with self._lock:
            data: dict[str, Any] = {name: getattr(self, name) for name in self._figures}
            data.update({name: dict(tally) for name, tally in self._tallies.items()})
        for name, counted in (
            ("checkouts", checkouts),
            ("reuses", checkouts - first_uses),
            ("checkins", checkins),
            ("checked_out", checkouts - checkins),
        ):
            if name in data:
                data[name] += counted
        base = data[self._reuse_of]
        data["reuse_rate"] = round(data["reuses"] / base, 4) if base else 0.0
        return data

    def after_fork_in_child(self) -> None:
        """Keep the figures; replace the lock, which a parent thread may have held at fork time forever."""
        self._lock = threading.Lock()


def _current(count: itertools.count[int]) -> int:
    """The value the next ``next(count)`` returns, without taking it.

    Read from ``repr`` (``count(n)``): itertools' pickle support (``__reduce__``) is deprecated since
    Python 3.12 and gone in 3.14, while the repr is documented behaviour.
    """
    return int(repr(count)[len("count(") : -1])


# -- status, one-line status and alerts over every registered source ---------------------------------

#: Utilization (checked out / (size + max overflow)) at or above which pool_alerts() warns.
HIGH_UTILIZATION = 0.8

_alert_logger = logging.getLogger("db_utils.alerts")
# Counter values seen by the previous pool_alerts() call, so each timeout/invalidation is reported once.
_alerted: dict[str, dict[str, float]] = {}
_alerted_lock = threading.Lock()


def pool_status() -> dict[str, Any]:
    """Every pool's figures, keyed by kind (``postgres``: one entry per password-free URL)."""
    return collect()


def pool_status_line() -> str:
    """One line for logs, e.g. ``postgres[postgresql+psycopg2://app:***@db/app] out=3/30 util=10% ...``."""
    parts = []
    for url, figures in collect().get("postgres", {}).items():
        parts.append(
            f"postgres[{url}] out={figures['checked_out']}/{figures['pool_size'] + figures['max_overflow']} "
            f"idle={figures['idle']} util={figures['utilization']:.0%} reuse={figures['reuse_rate']:.0%} "
            f"created={figures['connections_created']} waits={figures['waits']} "
            f"timeouts={figures['timeouts']} invalidated={figures['invalidated']} "
            f"discarded={figures['discarded_dirty']}"
        )
    for kind, figures in collect().items():
        if kind != "postgres" and figures:
            parts.append(f"{kind}[{_compact(figures)}]")
    return "; ".join(parts) if parts else "no pools"


def _compact(figures: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in figures.items() if isinstance(value, (int, float)))


def pool_alerts() -> list[str]:
    """Conditions worth a human's attention, each also logged as a warning on ``db_utils.alerts``.

    Thresholds: utilization >= 80 % (``HIGH_UTILIZATION``) right now; any checkout timeout, and any
    connection invalidated as broken, since the previous call.
    """
    alerts: list[str] = []
    for url, figures in collect().get("postgres", {}).items():
        alerts.extend(_postgres_alerts(url, figures))
    for message in alerts:
        _alert_logger.warning(message)
    return alerts


def _postgres_alerts(url: str, figures: dict[str, Any]) -> list[str]:
    with _alerted_lock:
        previous = _alerted.get(url, {})
        _alerted[url] = {"timeouts": figures["timeouts"], "invalidated": figures["invalidated"]}
    alerts = []
    if figures["utilization"] >= HIGH_UTILIZATION:
        alerts.append(
            f"{url}: pool utilization {figures['utilization']:.0%} ({figures['checked_out']} of "
            f"{figures['pool_size'] + figures['max_overflow']} connections checked out)"
        )
    new_timeouts = figures["timeouts"] - previous.get("timeouts", 0)
    if new_timeouts > 0:
        alerts.append(f"{url}: {new_timeouts} checkout timeout(s) since the last check")
    new_invalidated = figures["invalidated"] - previous.get("invalidated", 0)
    if new_invalidated > 0:
        alerts.append(f"{url}: {new_invalidated} broken connection(s) invalidated since the last check")
    return alerts
