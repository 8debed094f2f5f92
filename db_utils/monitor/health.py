"""``/system-health``: each configured PostgreSQL database pinged, every pool judged by its active alerts.

A component is ``unhealthy`` when its database does not answer or a critical alert (timeouts, failed
connects) is active, ``degraded`` under a warning (high utilization, broken connections), else
``healthy``; the whole system is its worst component. The endpoint answers 503 when unhealthy, so it can
serve as a load balancer's readiness check (not as a liveness check: restarting a process does not fix
its database).

Pings go through :func:`db_utils.health_check`, which needs the database's real URL: the public stats
only carry password-free names. So the databases to ping are given to the monitor (default: the
default database, as ``health_check()`` pings). A pool the caller did not list is judged by its figures
alone (``"ping": null``). A pool known to be exhausted is not pinged: the ping would wait up to
``DB_POOL_TIMEOUT`` for a connection the application needs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import URL

import db_utils
from db_utils.monitor.figures import Pool, component

Database = str | URL | None

_RANK = {"healthy": 0, "degraded": 1, "unhealthy": 2}


class Pinger:
    """Pings the configured databases; remembers which pool each one turned out to be."""

    def __init__(self, databases: Iterable[Database]) -> None:
        self._databases: tuple[Database, ...] = tuple(databases)
        # Index in _databases -> the password-free pool name its last ping reported, guarded by _lock
        # (never held during a ping). A stale entry only decides whether one ping is skipped.
        self._names: dict[int, str] = {}
        self._lock = threading.Lock()

    def ping(self, exhausted: set[str]) -> list[dict[str, Any]]:
        """One result per configured database: ``{"pool", "ok", "latency_ms", "error", "skipped"}``."""
        results = []
        for index, url in enumerate(self._databases):
            with self._lock:
                name = self._names.get(index)
            if name is not None and name in exhausted:
                results.append(_skipped(name))
                continue
            outcome = db_utils.health_check(url)
            with self._lock:
                self._names[index] = outcome["url"]
            results.append(
                {
                    "pool": outcome["url"],
                    "ok": outcome["healthy"],
                    "latency_ms": outcome["latency_ms"],
                    "error": outcome["error"],
                    "skipped": None,
                }
            )
        return results


def _skipped(name: str) -> dict[str, Any]:
    reason = "pool exhausted: a ping would wait for a connection the application needs"
    return {"pool": name, "ok": None, "latency_ms": None, "error": None, "skipped": reason}


def exhausted_pools(pools: Iterable[Pool]) -> set[str]:
    """Names of PostgreSQL pools with every connection checked out."""
    return {
        pool["name"]
        for pool in pools
        if pool["kind"] == "postgres" and pool["max"] and (pool["active"] or 0) >= pool["max"]
    }


def system_health(
    pools: Sequence[Pool], pings: Sequence[Mapping[str, Any]], alerts: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The ``/system-health`` document from the pools' figures, the ping results and the active alerts."""
    pings_by_name = {ping["pool"]: ping for ping in pings}
    components = [
        _component(pool["kind"], pool["name"], pool, pings_by_name.pop(pool["name"], None), alerts)
        for pool in pools
    ]
    # A database that could not be reached may have no pool to show (an unresolvable URL, say).
    components += [
        _component("postgres", ping["pool"], None, ping, alerts) for ping in pings_by_name.values()
    ]
    status = max((c["status"] for c in components), key=_RANK.__getitem__, default="healthy")
    return {"status": status, "components": components}


def _component(
    kind: str,
    name: str,
    pool: Pool | None,
    ping: Mapping[str, Any] | None,
    alerts: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    label = component({"kind": kind, "name": name})
    mine = [alert for alert in alerts if alert["component"] == label]
    return {
        "component": label,
        "kind": kind,
        "name": name,
        "status": _status(ping, mine),
        "ping": None if ping is None else {key: value for key, value in ping.items() if key != "pool"},
        "checkout_wait_avg_ms": None if pool is None else pool["checkout_wait_avg_ms"],
        "query_time_avg_ms": None if pool is None else pool["query_time_avg_ms"],
        "alerts": [alert["condition"] for alert in mine],
    }


def _status(ping: Mapping[str, Any] | None, alerts: Sequence[Mapping[str, Any]]) -> str:
    if (ping is not None and ping["ok"] is False) or any(a["severity"] == "critical" for a in alerts):
        return "unhealthy"
    if alerts or (ping is not None and ping["skipped"]):
        return "degraded"
    return "healthy"
