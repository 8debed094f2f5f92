"""Pool lifecycle log lines (``pool_created``, ``pool_exhausted``, ``pool_recovered``, ``pool_disposed``),
one per change, as the pools themselves notify it (:func:`db_utils.stats.add_listener`).

The pools tell their changes when they happen, on paths a checkout that finds a free connection never
takes: *exhausted* when a checkout finds every connection in use and queues, *recovered* when no checkout
is queued any more (see :class:`db_utils.stats.PoolEvent`). Nothing is logged per checkout, and nothing is
missed between two looks at ``pool_status()``. The process has one :class:`StateLog`, listening from the
first :class:`~db_utils.monitor.views.Monitor` on (creating an app creates the default one); it also
remembers each pool's current state for ``/connection-pools``. PostgreSQL pools notify all four changes;
SQLite pools and the HTTP pool manager notify ``created`` and ``disposed`` only (their exhaustion is not
tracked as an event yet).
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from typing import Any

from db_utils import stats
from db_utils.monitor.logline import log_event

_LEVELS = {
    "created": logging.INFO,
    "exhausted": logging.WARNING,
    "recovered": logging.INFO,
    "disposed": logging.INFO,
}


class StateLog:
    """Logs each :class:`~db_utils.stats.PoolEvent`; remembers each pool's latest. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], dict[str, Any]] = {}

    def __call__(self, event: stats.PoolEvent) -> None:
        name, level = f"pool_{event.event}", _LEVELS[event.event]
        log_event(level, name, kind=event.kind, pool=event.pool, **event.figures)
        key = (event.kind, event.pool)
        with self._lock:
            if event.event == "disposed":
                self._states.pop(key, None)
            else:
                state = "exhausted" if event.event == "exhausted" else "serving"
                since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
                self._states[key] = {"state": state, "since": since.replace("+00:00", "Z")}

    def state(self, kind: str, name: str) -> dict[str, Any] | None:
        """``{"state": "serving" | "exhausted", "since": ISO time}``, None if the pool never notified."""
        with self._lock:
            found = self._states.get((kind, name))
            return None if found is None else dict(found)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()


_log: StateLog | None = None
_log_lock = threading.Lock()


def lifecycle_log() -> StateLog:
    """The process's :class:`StateLog`, listening to the pools from the first call on."""
    global _log  # noqa: PLW0603 - one listener per process, or each line would be logged twice
    with _log_lock:
        if _log is None:
            _log = StateLog()
            stats.add_listener(_log)
        return _log


def _after_fork_in_child() -> None:
    global _log_lock  # noqa: PLW0603 - a lock held by another thread at fork() stays held forever
    _log_lock = threading.Lock()
    if _log is not None:
        _log.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
