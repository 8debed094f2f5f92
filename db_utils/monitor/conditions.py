"""What is wrong with a pool right now, and which setting to change about it: one function per condition.

A condition reads one pool's figures (:mod:`db_utils.monitor.figures`) plus how much its event counters
grew within the alert window, and returns a :class:`Finding` or None. It decides nothing about timing,
repetition or logging: :mod:`db_utils.monitor.alerts` does that for every condition alike. A new condition
is one function added to :data:`CONDITIONS` (and its counter to :data:`WATCHED_COUNTERS` if it reads one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from db_utils.monitor.figures import component
from db_utils.stats import HIGH_UTILIZATION

Severity = Literal["warning", "critical"]

#: Counters whose growth within the window the conditions read (figure keys).
WATCHED_COUNTERS = ("timeouts", "invalidated", "failed")

#: Broken connections within one window that make a storm (a restart or failover breaks many at once).
INVALIDATION_STORM = 3

_SHOW_POOLS = "PgBouncer's SHOW POOLS (cl_waiting, maxwait)"


@dataclass(frozen=True)
class Finding:
    """One condition on one component; ``condition`` is a stable identifier, the texts are for humans."""

    condition: str
    severity: Severity
    component: str
    message: str
    recommendation: str


Condition = Callable[[Mapping[str, Any], Mapping[str, int], float], "Finding | None"]


def high_utilization(pool: Mapping[str, Any], recent: Mapping[str, int], window: float) -> Finding | None:
    """Checked out >= 80 % of the bound: the next burst waits (HikariCP's and PgBouncer's usual alarm)."""
    active, bound = pool["active"], pool["max"]
    if not bound or active is None or active / bound < HIGH_UTILIZATION:
        return None
    needed = smallest_bound_below_threshold(active)
    size, raise_by = pool["size"], needed - bound
    raise_pool = (
        f"raise DB_POOL_SIZE by {raise_by}, from {size} to {size + raise_by}, so {active} busy connections "
        f"stay below {HIGH_UTILIZATION:.0%} of the bound (DB_MAX_OVERFLOW absorbs bursts, but its "
        f"connections are closed when returned). "
    )
    if _pooling(pool) == "transaction":
        advice = (
            f"Behind PgBouncer the busy connections may be queued in the bouncer, not working: if "
            f"{_SHOW_POOLS} shows clients waiting, the server side is short, and the knob is PgBouncer's "
            f"default_pool_size, not DB_POOL_SIZE. Otherwise, if connections are not held longer than "
            f"needed, " + raise_pool + _budget(pool, needed)
        )
    else:
        advice = (
            "If connections are not held longer than needed (slow queries, work done while holding one), "
            + raise_pool
            + _budget(pool, needed)
        )
    return Finding(
        "high_utilization",
        "warning",
        component(pool),
        f"pool utilization {active / bound:.0%}: {active} of {bound} connections checked out",
        advice,
    )


def checkout_timeouts(pool: Mapping[str, Any], recent: Mapping[str, int], window: float) -> Finding | None:
    """A checkout gave up after DB_POOL_TIMEOUT: a request failed for want of a connection."""
    count, size, bound = recent.get("timeouts", 0), pool["size"], pool["max"]
    if count <= 0 or not bound or size is None:
        return None
    raise_by = max(1, math.ceil(bound / 4))
    return Finding(
        "checkout_timeouts",
        "critical",
        component(pool),
        f"{count} checkout(s) timed out in the last {window:g} s: all {bound} connections were in use",
        f"Look for connections held too long or never closed first; if the load is genuine, raise "
        f"DB_POOL_SIZE by {raise_by} (a quarter of the bound), from {size} to {size + raise_by}, and keep "
        f"DB_POOL_TIMEOUT below the request timeout. " + _budget(pool, bound + raise_by),
    )


def invalidation_storm(pool: Mapping[str, Any], recent: Mapping[str, int], window: float) -> Finding | None:
    """Many pooled connections found broken at once: a restart, a failover or an idle cut-off in between.

    HTTP is left out: servers closing idle keep-alive connections is routine there, and the pool retries.
    """
    count = recent.get("invalidated", 0)
    if pool["kind"] == "http" or count < INVALIDATION_STORM:
        return None
    if pool["kind"] == "sqlite":
        advice = "SQLite connections failed their reset on return: look for errors logged by the application."
    elif _pooling(pool) is not None:
        advice = (
            "If PgBouncer did not restart (or its server fail over), it or something in between closes "
            "idle client connections: set DB_POOL_RECYCLE below PgBouncer's client_idle_timeout (and any "
            "firewall's idle cut-off), for example 300 for a 5-minute cut-off, and keep DB_POOL_PRE_PING on."
        )
    else:
        advice = (
            "If the server did not restart or fail over, something between the service and the server "
            "(firewall, load balancer) closes idle connections: set DB_POOL_RECYCLE below its idle "
            "cut-off (for example 300 for a 5-minute cut-off) and keep DB_POOL_PRE_PING on."
        )
    return Finding(
        "invalidation_storm",
        "warning",
        component(pool),
        f"{count} pooled connections found broken in the last {window:g} s",
        advice,
    )


def connection_failures(pool: Mapping[str, Any], recent: Mapping[str, int], window: float) -> Finding | None:
    """Opening a new connection failed: the database (or host) is down, unreachable or full."""
    count = recent.get("failed", 0)
    if count <= 0:
        return None
    if pool["kind"] == "postgres" and _pooling(pool) is not None:
        advice = (
            "Check that PgBouncer is up and reachable. If the errors say 'no more connections allowed "
            "(max_client_conn)', the client connections of all processes exceed PgBouncer's "
            f"max_client_conn: raise it, or lower DB_POOL_SIZE + DB_MAX_OVERFLOW (now {pool['max']} per "
            "process). If they say PgBouncer cannot connect to the server, check the server and that "
            f"bouncers x default_pool_size fits its {_server_budget(pool)}."
        )
    elif pool["kind"] == "postgres":
        advice = (
            "Check that the server is up and reachable. If the errors say 'too many clients', the "
            f"connections of all processes exceed max_connections: lower DB_POOL_SIZE + DB_MAX_OVERFLOW "
            f"(now {pool['max']} per process) or put PgBouncer in front."
        )
    elif pool["kind"] == "http":
        advice = "Check that the host is up and reachable; HTTP_POOL_MAXSIZE does not change this."
    else:
        advice = "Check the database file's path and permissions."
    return Finding(
        "connection_failures",
        "critical",
        component(pool),
        f"{count} attempt(s) to open a connection failed in the last {window:g} s",
        advice,
    )


def _pooling(pool: Mapping[str, Any]) -> str | None:
    """The PgBouncer pool mode the pool runs behind (``transaction``/``session``), None for PostgreSQL."""
    pgbouncer = pool.get("pgbouncer")
    return None if not pgbouncer else pgbouncer["pooling"]


def _server_budget(pool: Mapping[str, Any]) -> str:
    """The server's connection budget, with its numbers once the pool has connected."""
    server = pool.get("server")
    if not server:
        return "max_connections minus superuser_reserved_connections (SHOW max_connections)"
    return (
        f"max_connections ({server['max_connections']}) minus its {server['reserved_connections']} reserved "
        f"connections: {server['budget']}"
    )


def _budget(pool: Mapping[str, Any], bound: int) -> str:
    """The budget a new per-process bound ``bound`` draws on, for the mode the pool runs in."""
    pooling = _pooling(pool)
    if pooling == "transaction":
        return (
            f"Budget: behind PgBouncer in transaction pooling the bound counts client connections, which "
            f"are cheap: keep processes x {bound} within PgBouncer's max_client_conn. Server connections "
            f"are PgBouncer's default_pool_size (per database and user): keep bouncers x default_pool_size "
            f"within the server's {_server_budget(pool)}."
        )
    if pooling == "session":
        return (
            f"Budget: behind PgBouncer in session pooling every client connection holds a server "
            f"connection: keep processes x {bound} within PgBouncer's max_client_conn and its "
            f"default_pool_size (per database and user; clients beyond it wait in the bouncer), and "
            f"bouncers x default_pool_size within the server's {_server_budget(pool)}. Transaction pooling "
            f"(DB_POOL_MODE=pgbouncer) shares server connections between transactions instead."
        )
    return (
        f"Budget: every process may open DB_POOL_SIZE + DB_MAX_OVERFLOW connections; keep processes x "
        f"{bound} below the server's {_server_budget(pool)}, or put PgBouncer in front."
    )


CONDITIONS: tuple[Condition, ...] = (
    high_utilization,
    checkout_timeouts,
    invalidation_storm,
    connection_failures,
)


def findings(pool: Mapping[str, Any], recent: Mapping[str, int], window: float) -> list[Finding]:
    """Every condition that holds for ``pool`` now."""
    return [finding for check in CONDITIONS if (finding := check(pool, recent, window)) is not None]


def server_budget_exceeded(server: Mapping[str, Any]) -> Finding | None:
    """This process's pools on one server may together open more connections than the server allows.

    Each pool is bounded, but ``db_utils.postgres.connect`` makes one pool per distinct set of connection
    parameters (up to ``DB_CONNECT_MAX_POOLS``), and each URL has its own: their bounds add up. Pools
    behind a pooler are left out: there the sum counts client connections, which PgBouncer bounds.
    """
    total, budget = server["pools_max"], server["budget"]
    if server["behind_pooler"] or total <= budget:
        return None
    pools = server["pools"]
    per_pool = max(1, budget // pools)
    return Finding(
        "server_budget_exceeded",
        "warning",
        server_component(server),
        f"{pools} pool(s) of this process may open {total} connections to {server['address']}, more than "
        f"its {budget} (max_connections {server['max_connections']} minus {server['reserved_connections']} "
        f"reserved), and other processes need some too",
        f"Lower DB_POOL_SIZE + DB_MAX_OVERFLOW to at most {per_pool} per pool ({pools} pools, and less "
        f"with several processes: processes x pools x bound must fit {budget}); if the pools come from "
        f"db_utils.postgres.connect() with parameters that vary (application_name, options...), pass them "
        f"one way so fewer pools exist, or lower DB_CONNECT_MAX_POOLS; or put PgBouncer in front "
        f"(DB_POOL_MODE=pgbouncer), which bounds the server side by its default_pool_size.",
    )


def server_component(server: Mapping[str, Any]) -> str:
    """The name alerts use for a server: ``postgres-server:host:port``."""
    return f"postgres-server:{server['address']}"


def smallest_bound_below_threshold(active: int) -> int:
    """The smallest bound at which ``active`` checked-out connections are below the alert threshold."""
    per_mille = round(HIGH_UTILIZATION * 1000)
    return active * 1000 // per_mille + 1  # integer arithmetic: 4 / 0.8 must be exactly 5, not 5.000...1
