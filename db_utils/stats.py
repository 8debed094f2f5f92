"""Counters for every pool poolshift manages, and the registry that ``pool_status()`` reads.

Each kind of pool (PostgreSQL engines, SQLite pools, the HTTP pool manager) registers a *source*: a
function returning a JSON-serialisable dict of its current figures. ``pool_status()`` calls every source,
so a module that is never imported (say ``db_utils.http``) costs nothing and simply does not appear.

Counters are plain ints updated under one lock per :class:`PoolCounters`: the increments happen on
checkout/checkin paths that are already serialised by the pool's own lock most of the time, so the extra
uncontended lock costs tens of nanoseconds and keeps the figures exact under free-threaded builds too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

StatsSource = Callable[[], dict[str, Any]]

_sources: dict[str, StatsSource] = {}
_sources_lock = threading.Lock()


def register_source(kind: str, source: StatsSource) -> None:
    """Register (or replace) the stats source for one kind of pool: ``"postgres"``, ``"sqlite"``, ``"http"``."""
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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        """Add to several counters at once, atomically."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            data = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        data["reuse_rate"] = round(data["reuses"] / data["checkouts"], 4) if data["checkouts"] else 0.0
        return data
