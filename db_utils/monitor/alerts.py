"""Alerts as state, not as a stream: raised when a condition starts, cleared when it ends, logged sparingly.

Each evaluation reads the pools' figures, asks every condition (:mod:`db_utils.monitor.conditions`) and
compares with the alerts already active:

- a condition that holds and was not active is *raised* (it gets a ``since`` time);
- an active alert whose condition no longer holds is *cleared* at once: a level (utilization) as soon as
  it drops below the threshold, an event counter (timeouts, broken connections, failed connects) once a
  whole ``window`` has passed without a new event;
- the log line for a raise is rate-limited per (component, condition): at most one per
  ``notify_interval``, so a pool flapping around 80 % utilization does not flood the log. The alert itself
  is still listed while it holds, and a clear is logged only if its raise was.

Counters are compared with their own value a window ago, not with the previous call, so any number of
readers (the endpoints, Prometheus scrapes, the watcher) see the same alerts; ``pool_alerts()``, which
counts since its previous call, keeps its own baselines and is not disturbed.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from db_utils.monitor.conditions import WATCHED_COUNTERS, Finding, findings, server_budget_exceeded
from db_utils.monitor.figures import Pool, component, read_servers
from db_utils.monitor.logline import log_event

#: Seconds an event counter's growth keeps its alert active.
DEFAULT_WINDOW = 60.0
#: Seconds between two log lines raising the same alert.
DEFAULT_NOTIFY_INTERVAL = 300.0

_Key = tuple[str, str]  # (component, condition)


@dataclass
class _Active:
    finding: Finding
    since: float  # wall-clock time, for display
    logged: bool  # whether its raise was logged (then its clear is too)


class AlertBook:
    """The active alerts of one process, and the memory that rate-limits and clears them.

    ``clock`` (monotonic seconds) and ``wall_clock`` (epoch seconds) are parameters so the window and the
    rate limit can be shown to work without waiting minutes. Thread-safe: one lock guards every field.
    """

    def __init__(
        self,
        *,
        window: float = DEFAULT_WINDOW,
        notify_interval: float = DEFAULT_NOTIFY_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if window <= 0 or notify_interval < 0:
            raise ValueError("window must be positive and notify_interval not negative")
        self.window = window
        self.notify_interval = notify_interval
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._active: dict[_Key, _Active] = {}
        self._last_notified: dict[_Key, float] = {}
        self._history: dict[tuple[str, str], deque[tuple[float, int]]] = {}

    def evaluate(self, pools: Iterable[Pool]) -> list[dict[str, Any]]:
        """Update the active alerts from ``pools``; return them, most severe first, as JSON-ready dicts."""
        pools = list(pools)
        with self._lock:
            now = self._clock()
            found: dict[_Key, Finding] = {}
            seen: set[tuple[str, str]] = set()
            for server in read_servers(pools):  # conditions across the pools of one server
                budget = server_budget_exceeded(server)
                if budget is not None:
                    found[budget.component, budget.condition] = budget
            for pool in pools:
                name = component(pool)
                recent = {
                    counter: self._growth(name, counter, pool[counter], now) for counter in WATCHED_COUNTERS
                }
                seen.update((name, counter) for counter in WATCHED_COUNTERS)
                for finding in findings(pool, recent, self.window):
                    found[finding.component, finding.condition] = finding
            for key in self._history.keys() - seen:  # pools that are gone
                del self._history[key]
            self._clear_ended(found)
            self._raise_or_update(found, now)
            return [_as_json(alert) for _key, alert in sorted(self._active.items(), key=_order)]

    def _growth(self, name: str, counter: str, value: int | None, now: float) -> int:
        """How much ``counter`` grew over the last window (0 the first time it is seen)."""
        if value is None:
            return 0
        samples = self._history.setdefault((name, counter), deque())
        if samples and value < samples[-1][1]:  # the pool was rebuilt (dispose_pools, fork): counts restart
            samples.clear()
            samples.append((now, 0))
        samples.append((now, value))
        # Keep the newest sample at or before the window's start as the baseline, and everything after it.
        while len(samples) > 1 and samples[1][0] <= now - self.window:
            samples.popleft()
        return value - samples[0][1]

    def _clear_ended(self, found: dict[_Key, Finding]) -> None:
        for key in [key for key in self._active if key not in found]:
            ended = self._active.pop(key)
            if ended.logged:
                log_event(
                    logging.INFO,
                    "alert_cleared",
                    component=key[0],
                    condition=key[1],
                    active_seconds=round(self._wall_clock() - ended.since, 3),
                )

    def _raise_or_update(self, found: dict[_Key, Finding], now: float) -> None:
        for key, finding in found.items():
            active = self._active.get(key)
            if active is not None:
                active.finding = finding  # same condition, current figures
                continue
            last = self._last_notified.get(key)
            notify = last is None or now - last >= self.notify_interval
            self._active[key] = _Active(finding, since=self._wall_clock(), logged=notify)
            if notify:
                self._last_notified[key] = now
                log_event(
                    logging.WARNING,
                    "alert_raised",
                    component=finding.component,
                    condition=finding.condition,
                    severity=finding.severity,
                    message=finding.message,
                )


_SEVERITY_ORDER = {"critical": 0, "warning": 1}


def _order(item: tuple[_Key, _Active]) -> tuple[int, str, str]:
    (name, condition), alert = item
    return _SEVERITY_ORDER[alert.finding.severity], name, condition


def _as_json(alert: _Active) -> dict[str, Any]:
    finding = alert.finding
    since = datetime.datetime.fromtimestamp(alert.since, datetime.UTC)
    return {
        "severity": finding.severity,
        "component": finding.component,
        "condition": finding.condition,
        "message": finding.message,
        "recommendation": finding.recommendation,
        "since": since.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
