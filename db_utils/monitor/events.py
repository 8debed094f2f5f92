"""Pool lifecycle log lines: ``pool_created``, ``pool_exhausted``, ``pool_recovered``, one per change.

The pools have no lifecycle hook today, so changes are found by comparing successive observations of
``pool_status()`` (each endpoint request, and the watcher's ticks, observe once); nothing is logged per
checkout. A pool is *exhausted* when all its connections are checked out, or when a checkout waited or
timed out since the previous observation (the bound was hit in between). It has *recovered* once it is
back below the alert threshold with no new wait: the gap between the two levels keeps a pool hovering at
its bound from logging a pair of lines per observation. ``pool_created`` means first observed: with a hook
in the pools it would be logged at creation itself, through the same :func:`log_event`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from db_utils.monitor.figures import Pool
from db_utils.monitor.logline import log_event
from db_utils.stats import HIGH_UTILIZATION


@dataclass
class _Seen:
    exhausted: bool
    waits: int
    timeouts: int


class StateLog:
    """What each pool looked like at the previous observation. Thread-safe: one lock guards it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], _Seen] = {}

    def observe(self, pools: Iterable[Pool]) -> None:
        """Log every change since the previous observation; forget pools that are gone."""
        with self._lock:
            current: dict[tuple[str, str], _Seen] = {}
            for pool in pools:
                key = (pool["kind"], pool["name"])
                current[key] = self._observe_one(pool, self._seen.get(key))
            self._seen = current

    def _observe_one(self, pool: Pool, before: _Seen | None) -> _Seen:
        waits, timeouts = pool["waits"] or 0, pool["timeouts"] or 0
        if before is None:
            before = _Seen(exhausted=False, waits=waits, timeouts=timeouts)
            log_event(logging.INFO, "pool_created", kind=pool["kind"], pool=pool["name"], size=pool["size"],
                      max=pool["max"])  # fmt: skip
        if not pool["max"] or pool["active"] is None:
            return _Seen(exhausted=False, waits=waits, timeouts=timeouts)
        hit_bound = pool["active"] >= pool["max"] or waits > before.waits or timeouts > before.timeouts
        if before.exhausted:
            exhausted = hit_bound or pool["active"] / pool["max"] >= HIGH_UTILIZATION
        else:
            exhausted = hit_bound
        if exhausted != before.exhausted:
            log_event(
                logging.WARNING if exhausted else logging.INFO,
                "pool_exhausted" if exhausted else "pool_recovered",
                kind=pool["kind"],
                pool=pool["name"],
                active=pool["active"],
                max=pool["max"],
                waits=waits,
                timeouts=timeouts,
            )
        return _Seen(exhausted=exhausted, waits=waits, timeouts=timeouts)
