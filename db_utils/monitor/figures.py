"""Every pool's figures in one shape, whatever its kind: the one table the JSON and Prometheus views share.

``pool_status()`` reports each kind of pool in its own words (``checked_out`` and ``pool_size`` for
PostgreSQL, ``idle_size`` for SQLite, ``requests`` and ``maxsize`` for HTTP). The monitoring views need one
vocabulary, so each kind gets a reader: a map from the shared figure names to that source's keys. A figure
a source does not report (yet) reads as ``None`` and is shown as ``null`` in JSON and left out of
Prometheus, never as a made-up zero. When a source starts reporting a key named in its reader, the figure
appears everywhere with no other change; a new figure is one :data:`FIGURES` row plus the reader entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from db_utils.stats import HTTP_POOL_NAME

Pool = dict[str, Any]
"""One pool's figures: ``kind``, ``name``, every :data:`FIGURES` key (``None`` when unknown), and for
PostgreSQL what it runs behind: ``pgbouncer`` (the mode and what it changes) and ``server`` (address and
``max_connections`` budget), each ``None`` where not known (other kinds, a pool not connected yet)."""

#: Entries of a pool that are not figures but descriptions, passed through from the source as they are.
DESCRIPTIONS = ("pgbouncer", "server")


@dataclass(frozen=True)
class Figure:
    """One figure of a pool: its JSON key, and its Prometheus family (``metric`` None: JSON only).

    Counter families are named without ``_total``; prometheus_client adds it to the exposed samples.
    """

    key: str
    kind: Literal["gauge", "counter"]
    metric: str | None
    help: str


FIGURES: tuple[Figure, ...] = (
    Figure("size", "gauge", "poolshift_connections_size",
           "Connections kept open between uses (DB_POOL_SIZE, SQLITE_POOL_SIZE, HTTP_POOL_MAXSIZE)"),
    Figure("max_overflow", "gauge", None, "Connections allowed beyond size, closed when returned"),
    Figure("max", "gauge", "poolshift_connections_max",
           "Most connections the pool opens at once (size + max overflow); absent when unbounded"),
    Figure("total", "gauge", "poolshift_connections", "Connections open now (active + idle)"),
    Figure("active", "gauge", "poolshift_connections_active", "Connections checked out now"),
    Figure("idle", "gauge", "poolshift_connections_idle", "Open connections waiting in the pool"),
    Figure("pending", "gauge", "poolshift_connections_pending", "Callers waiting for a connection now"),
    Figure("opened", "counter", "poolshift_connections_creation",
           "Connections opened since the pool started"),
    Figure("failed", "counter", "poolshift_connections_failed", "Attempts to open a connection that failed"),
    Figure("acquired", "counter", "poolshift_connections_acquired", "Checkouts (borrowed connections)"),
    Figure("reused", "counter", "poolshift_connections_reused",
           "Checkouts served by an already open connection"),
    Figure("waits", "counter", "poolshift_connections_wait", "Checkouts that waited for a free connection"),
    Figure("wait_seconds", "counter", "poolshift_connections_wait_seconds",
           "Time checkouts spent waiting for a free connection"),
    Figure("timeouts", "counter", "poolshift_connections_timeout",
           "Checkouts that gave up after the pool timeout (DB_POOL_TIMEOUT)"),
    Figure("invalidated", "counter", "poolshift_connections_invalidated",
           "Pooled connections found broken and replaced (HTTP: stale keep-alive connections retried)"),
    Figure("discarded", "counter", "poolshift_connections_discarded",
           "Connections closed on return because their state could not be reset"),
    Figure("recycled", "counter", "poolshift_connections_recycled",
           "Connections replaced for age (DB_POOL_RECYCLE)"),
    Figure("queries", "counter", "poolshift_queries", "Statements executed on pooled connections"),
    Figure("query_seconds", "counter", "poolshift_query_seconds",
           "Time spent executing statements on pooled connections"),
    Figure("utilization", "gauge", None, "active / max (Prometheus: divide the two gauges)"),
    Figure("reuse_rate", "gauge", None, "reused / acquired (Prometheus: divide the two counters)"),
    Figure("checkout_wait_avg_ms", "gauge", None, "Average wait per checkout, waits or not, in milliseconds"),
    Figure("query_time_avg_ms", "gauge", None, "Average statement time in milliseconds"),
)  # fmt: skip

# Shared figure -> the source's key. A key absent from a reader, or from the source's dict, reads as None.
# Entries naming keys no source reports yet (``queries``, ``query_time_total``, HTTP ``checked_out``/``idle``)
# are the contract for the counters still to be added.
_POSTGRES = {
    "size": "pool_size",
    "max_overflow": "max_overflow",
    "active": "checked_out",
    "idle": "idle",
    "pending": "waiting",
    "opened": "connections_created",
    "failed": "connect_failures",
    "acquired": "checkouts",
    "reused": "reuses",
    "waits": "waits",
    "wait_seconds": "wait_time_total",
    "timeouts": "timeouts",
    "invalidated": "invalidated",
    "discarded": "discarded_dirty",
    "recycled": "recycled",
    "queries": "queries",
    "query_seconds": "query_time_total",
    "reuse_rate": "reuse_rate",
}
_SQLITE = {
    "size": "idle_size",
    "active": "checked_out",
    "idle": "idle",
    "opened": "connections_created",
    "failed": "connect_failures",
    "acquired": "checkouts",
    "reused": "reuses",
    "waits": "waits",
    "wait_seconds": "wait_time_total",
    "timeouts": "timeouts",
    "invalidated": "invalidated",
    "discarded": "discarded_dirty",
    "queries": "queries",
    "query_seconds": "query_time_total",
    "reuse_rate": "reuse_rate",
}
_HTTP = {
    "size": "maxsize",
    "active": "checked_out",
    "idle": "idle",
    "opened": "connections_created",
    "failed": "connect_failures",
    "acquired": "requests",
    "reused": "reuses",
    "invalidated": "stale_retries",
    "discarded": "discarded",
    "reuse_rate": "reuse_rate",
}


def read_pools(status: Mapping[str, Any]) -> list[Pool]:
    """``pool_status()`` as a list of pools in the shared vocabulary, sorted by kind then name.

    Kinds without a reader are left out: their figures have no agreed meaning yet.
    """
    pools = [_read("postgres", name, raw, _POSTGRES) for name, raw in status.get("postgres", {}).items()]
    for name, raw in status.get("sqlite", {}).get("databases", {}).items():
        pools.append(_read("sqlite", name, raw, _SQLITE))
    if status.get("http"):
        pools.append(_read("http", HTTP_POOL_NAME, status["http"], _HTTP))
    return sorted(pools, key=lambda pool: (pool["kind"], pool["name"]))


def read_servers(pools: Iterable[Pool]) -> list[dict[str, Any]]:
    """The servers the PostgreSQL pools connect to, each with the pools on it and the sum of their bounds.

    ``{"address", "behind_pooler", "max_connections", "reserved_connections", "budget", "pools",
    "pools_max", "pool_names"}``, sorted by address: the source's ``server`` entry (which counted the
    pools and summed their bounds), plus the pools' names. Pools not connected yet have no ``server``.
    """
    servers: dict[str, dict[str, Any]] = {}
    for pool in pools:
        server = pool.get("server")
        if server:
            entry = servers.setdefault(server["address"], {**server, "pool_names": []})
            entry["pool_names"].append(pool["name"])
    return [servers[address] for address in sorted(servers)]


def component(pool: Mapping[str, Any]) -> str:
    """The name alerts and health checks use for a pool: ``kind:name``."""
    return f"{pool['kind']}:{pool['name']}"


def _read(kind: str, name: str, raw: Mapping[str, Any], reader: Mapping[str, str]) -> Pool:
    pool: Pool = {"kind": kind, "name": name}
    for figure in FIGURES:
        source_key = reader.get(figure.key)
        pool[figure.key] = None if source_key is None else raw.get(source_key)
    for key in DESCRIPTIONS:
        pool[key] = raw.get(key)
    return _derive(pool)


def _derive(pool: Pool) -> Pool:
    """Figures computed from others; each stays None when an input is unknown."""
    size, overflow, active, idle = pool["size"], pool["max_overflow"], pool["active"], pool["idle"]
    if pool["max"] is None and size is not None and overflow is not None:
        pool["max"] = size + overflow
    if active is not None and idle is not None:
        pool["total"] = active + idle
    if pool["max"] and active is not None:
        pool["utilization"] = round(active / pool["max"], 4)
    pool["checkout_wait_avg_ms"] = _average_ms(pool["wait_seconds"], pool["acquired"])
    pool["query_time_avg_ms"] = _average_ms(pool["query_seconds"], pool["queries"])
    return pool


def _average_ms(seconds: float | None, count: int | None) -> float | None:
    if seconds is None or count is None:
        return None
    return round(1000 * seconds / count, 3) if count else 0.0
