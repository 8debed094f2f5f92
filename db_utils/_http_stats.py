"""Counters of the pooled HTTP transport, reported by ``pool_status()`` under ``"http"``.

One lock guards every counter: increments happen once or twice per request, so an uncontended lock is
noise next to a network round trip, and it keeps the figures exact when 32 threads share the pool.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class HttpCounters:
    """Monotonic counters; ``snapshot()`` adds the derived ``reuse_rate``."""

    _FIELDS = (
        "calls",
        "requests",
        "connections_created",
        "reuses",
        "stale_retries",
        "discarded",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self._FIELDS, 0)
        self._fallbacks: Counter[str] = Counter()

    def add(self, **deltas: int) -> None:
        """Add to several counters at once, atomically."""
        with self._lock:
            for name, delta in deltas.items():
                self._values[name] += delta

    def fallback(self, reason: str) -> None:
        """Count one call handed to urllib unchanged, by reason."""
        with self._lock:
            self._values["calls"] += 1
            self._fallbacks[reason] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            data: dict[str, Any] = dict(self._values)
            data["fallbacks"] = dict(self._fallbacks)
        requests = data["requests"]
        data["reuse_rate"] = round(data["reuses"] / requests, 4) if requests else 0.0
        return data

    def after_fork_in_child(self) -> None:
        """A lock held by another parent thread at fork time would stay locked forever in the child."""
        self._lock = threading.Lock()


counters = HttpCounters()
