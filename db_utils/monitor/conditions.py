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

_BUDGET = (
    "Budget: every process may open DB_POOL_SIZE + DB_MAX_OVERFLOW connections; keep processes x {bound} "
    "below the server's max_connections (SHOW max_connections) minus superuser_reserved_connections, or "
    "put PgBouncer in front."
)


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
    return Finding(
        "high_utilization",
        "warning",
        component(pool),
        f"pool utilization {active / bound:.0%}: {active} of {bound} connections checked out",
        f"If connections are not held longer than needed (slow queries, work done while holding one), "
        f"raise DB_POOL_SIZE by {raise_by}, from {size} to {size + raise_by}, so {active} busy connections "
        f"stay below {HIGH_UTILIZATION:.0%} of the bound (DB_MAX_OVERFLOW absorbs bursts, but its "
        f"connections are closed when returned). " + _BUDGET.format(bound=needed),
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
        f"DB_POOL_TIMEOUT below the request timeout. " + _BUDGET.format(bound=bound + raise_by),
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
    else:
        advice = (
            "If the server did not restart or fail over, something between the service and the server "
            "(firewall, load balancer, PgBouncer's server_idle_timeout) closes idle connections: set "
            "DB_POOL_RECYCLE below its idle cut-off (for example 300 for a 5-minute cut-off) and keep "
            "DB_POOL_PRE_PING on."
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
    if pool["kind"] == "postgres":
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


CONDITIONS: tuple[Condition, ...] = (
    high_utilization,
    checkout_timeouts,
    invalidation_storm,
    connection_failures,
)


def findings(pool: Mapping[str, Any], recent: Mapping[str, int], window: float) -> list[Finding]:
    """Every condition that holds for ``pool`` now."""
    return [finding for check in CONDITIONS if (finding := check(pool, recent, window)) is not None]


def smallest_bound_below_threshold(active: int) -> int:
    """The smallest bound at which ``active`` checked-out connections are below the alert threshold."""
    per_mille = round(HIGH_UTILIZATION * 1000)
    return active * 1000 // per_mille + 1  # integer arithmetic: 4 / 0.8 must be exactly 5, not 5.000...1
