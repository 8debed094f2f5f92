"""A background thread that observes the pools at a fixed interval, for services nobody polls.

Without it, lifecycle lines and alert lines are written when an endpoint is requested. With it they are
written within ``interval`` seconds of the change even if nobody asks. Started only by an explicit call;
a forked child has no watcher (threads do not survive ``fork()``) until it starts its own.
"""

from __future__ import annotations

import logging
import threading

from db_utils.monitor.views import Monitor, default_monitor

logger = logging.getLogger("db_utils.monitor")


class Watcher:
    """The running thread; :meth:`stop` ends it."""

    def __init__(self, monitor: Monitor, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.monitor = monitor
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poolshift-monitor-watch", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to end and wait for it (at most ``timeout`` seconds)."""
        self._stopped.set()
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.monitor.observe()
            except Exception:  # a monitoring thread must outlive a bad tick; the next one may work
                logger.exception("pool observation failed")
            self._stopped.wait(self.interval)


def watch(*, interval: float = 10.0, monitor: Monitor | None = None) -> Watcher:
    """Observe every ``interval`` seconds with ``monitor`` (default: the process-wide one) until stopped."""
    return Watcher(monitor or default_monitor(), interval).start()
