"""Counters for every pool poolshift manages, and the registry that ``pool_status()`` reads.

Each kind of pool (PostgreSQL engines, SQLite pools, the HTTP pool manager) registers a *source*: a
function returning a JSON-serialisable dict of its current figures. ``pool_status()`` calls every source,
so a module that is never imported (say ``db_utils.http``) costs nothing and simply does not appear.

Counters are plain ints updated under one lock per :class:`PoolCounters`: the increments happen on
checkout/checkin paths that are already serialised by the pool's own lock most of the time, so the extra
uncontended lock costs tens of nanoseconds and keeps the figures exact under free-threaded builds too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

StatsSource = Callable[[], dict[str, Any]]

_sources: dict[str, StatsSource] = {}
_sources_lock = threading.Lock()


def register_source(kind: str, source: StatsSource) -> None:
    """Register (or replace) the stats source of one kind of pool: ``postgres``, ``sqlite``, ``http``."""
    with _sources_lock:
        _sources[kind] = source


def collect() -> dict[str, dict[str, Any]]:
    """Every registered source's figures, keyed by kind."""
    with _sources_lock:
        sources = dict(_sources)
    return {kind: source() for kind, source in sorted(sources.items())}


@dataclass
class PoolCounters:
    """Monotonic counters plus the checked-out gauge for one pool.

    ``reuses`` counts checkouts served by an existing connection; ``reuse_rate`` is reuses / checkouts,
    the figure that shows pooling is working (near 1.0 under steady load).
    """

    connections_created: int = 0
    checkouts: int = 0
    reuses: int = 0
    checkins: int = 0
    recycled: int = 0
    invalidated: int = 0
    discarded_dirty: int = 0
    waits: int = 0
    wait_time_total: float = 0.0
    timeouts: int = 0
    checked_out: int = 0
    pings: int = 0
    ping_failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        """Add to several counters at once, atomically."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    # The two updates on every checkout/checkin are written out: ``add(**deltas)`` costs ~0.7-1 us per
    # call (keyword dict, getattr/setattr loop), a third of a whole pooled SQLite checkout.
    def on_checkout(self, *, reused: bool) -> None:
        with self._lock:
            self.checkouts += 1
            self.checked_out += 1
            if reused:
                self.reuses += 1

    def on_checkin(self) -> None:
        with self._lock:
            self.checkins += 1
            self.checked_out -= 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            data = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        data["reuse_rate"] = round(data["reuses"] / data["checkouts"], 4) if data["checkouts"] else 0.0
        return data


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
