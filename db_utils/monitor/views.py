"""The three monitoring documents, built once here for the WSGI app, the ASGI app and any framework view.

Every document starts from one ``pool_status()`` snapshot read into the shared vocabulary
(:mod:`db_utils.monitor.figures`); the same snapshot feeds the alerts (:mod:`.alerts`), so whoever asks (a
request, the watcher) also keeps the alerts current. The lifecycle log (:mod:`.events`) needs no asking:
the pools notify it, and each pool shows its latest state.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import db_utils
from db_utils.monitor.alerts import AlertBook
from db_utils.monitor.events import lifecycle_log
from db_utils.monitor.figures import Pool, read_pools, read_servers
from db_utils.monitor.health import Database, Pinger, exhausted_pools, system_health


class Monitor:
    """The state behind the endpoints of one process: alert memory, lifecycle memory, databases to ping.

    ``databases``: the URLs ``/system-health`` pings (default ``(None,)``: the default database, as
    ``health_check()`` does); pass ``()`` in a service without PostgreSQL. ``alert_book``: an
    :class:`AlertBook` with other window or rate limit than the defaults.
    """

    def __init__(
        self, *, databases: Iterable[Database] = (None,), alert_book: AlertBook | None = None
    ) -> None:
        self.alert_book = alert_book or AlertBook()
        self._state_log = lifecycle_log()
        self._pinger = Pinger(databases)

    def observe(self) -> tuple[list[Pool], list[dict[str, Any]]]:
        """Read every pool once (with its lifecycle state), update the alerts; return pools and alerts."""
        pools = read_pools(db_utils.pool_status())
        for pool in pools:
            pool["lifecycle"] = self._state_log.state(pool["kind"], pool["name"])
        return pools, self.alert_book.evaluate(pools)

    def connection_pools(self) -> dict[str, Any]:
        """``{"pools": [{"kind", "name", "size", ..., "pgbouncer", "server", "lifecycle"}, ...],
        "servers": [{"address", "budget", "pools_max", ...}, ...]}``."""
        pools, _alerts = self.observe()
        return {"pools": pools, "servers": read_servers(pools)}

    def alerts(self) -> dict[str, Any]:
        """``{"alerts": [{"severity", "component", "condition", "message", "recommendation", "since"}]}``."""
        _pools, alerts = self.observe()
        return {"alerts": alerts}

    def system_health(self) -> dict[str, Any]:
        """``{"status": "healthy" | "degraded" | "unhealthy", "components": [...]}``."""
        pools, _alerts = self.observe()
        pings = self._pinger.ping(exhausted_pools(pools))
        # Read again: the pings may have created a pool, and they count as checkouts like any other.
        pools, alerts = self.observe()
        return system_health(pools, pings, alerts)


_default: Monitor | None = None
_default_lock = threading.Lock()


def default_monitor() -> Monitor:
    """The process-wide :class:`Monitor` (default settings), created on first use."""
    global _default  # noqa: PLW0603 - one monitor per process is the point
    with _default_lock:
        if _default is None:
            _default = Monitor()
        return _default
