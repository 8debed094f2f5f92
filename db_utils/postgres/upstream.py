"""What a pool's connections lead to (PostgreSQL itself, or a pooler such as PgBouncer in front of it) and
the server's connection budget, read once per pool.

A ``connect`` listener probes the pool's first connection with one query and does nothing afterwards, so
neither the checkout path nor later connects pay for it. A pooler answers the client's startup itself and
hands it a cancel key of its own, so the backend pid libpq received (``connection.info.backend_pid``)
differs from ``pg_backend_pid()``, the server process that runs the query: that is how a pooler is seen
without admin access to it. ``max_connections`` and the reserved connections are the server's (behind a
pooler too: the query reaches the server). Pools are grouped by the address they connect to (host and
port, never the database or the user), the unit whose ``max_connections`` they share.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions as pgext
from sqlalchemy import event
from sqlalchemy.pool import ConnectionPoolEntry, Pool

from db_utils.postgres.driver import plain_cursor

logger = logging.getLogger("db_utils.pool")

# reserved_connections exists from PostgreSQL 16 on; current_setting(..., true) is NULL before.
PROBE = (
    "SELECT pg_backend_pid(), current_setting('max_connections')::int, "
    "current_setting('superuser_reserved_connections')::int, "
    "coalesce(current_setting('reserved_connections', true), '0')::int"
)


@dataclass(frozen=True)
class Upstream:
    """Where one pool's connections go, as its first connection found out."""

    #: ``host:port`` the pool connects to (a socket directory for Unix sockets): the server's identity.
    address: str
    #: A pooler (PgBouncer) answered, not PostgreSQL: the startup's backend pid is not the server's.
    pooler: bool
    max_connections: int
    #: ``superuser_reserved_connections`` plus ``reserved_connections`` (PostgreSQL 16+).
    reserved_connections: int

    @property
    def budget(self) -> int:
        """Connections ordinary roles may open: ``max_connections`` minus the reserved ones."""
        return self.max_connections - self.reserved_connections


class UpstreamProbe:
    """The ``connect`` listener of one pool: probes the first connection, then only returns."""

    def __init__(self) -> None:
        # Acquired by the first connect and never released: a one-shot flag that two connections opened
        # at once (a warm-up and a checkout) cannot both win, and that no fork() can leave blocking.
        self._claimed = threading.Lock()
        self.upstream: Upstream | None = None

    def __call__(self, dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # A failed probe is not retried either: the next connection would fail it the same way.
        if not self._claimed.acquire(blocking=False):
            return
        try:
            self.upstream = probe(dbapi_connection)
        except Exception as error:  # a monitoring probe never fails a connect
            logger.debug("could not read the server's connection settings: %s", type(error).__name__)


def watch(pool: Pool) -> UpstreamProbe:
    """Register an :class:`UpstreamProbe` on ``pool`` (it survives ``engine.dispose()``) and return it."""
    listener = UpstreamProbe()
    event.listen(pool, "connect", listener)
    return listener


def probe(dbapi_connection: Any) -> Upstream:
    """Read the :class:`Upstream` of one fresh connection; ends the transaction the query opened."""
    was_idle = dbapi_connection.info.transaction_status == pgext.TRANSACTION_STATUS_IDLE
    try:
        with plain_cursor(dbapi_connection) as cursor:
            cursor.execute(PROBE)
            server_pid, max_connections, superuser_reserved, reserved = cursor.fetchone()
    finally:
        if was_idle and dbapi_connection.info.transaction_status != pgext.TRANSACTION_STATUS_IDLE:
            dbapi_connection.rollback()
    info = dbapi_connection.info
    return Upstream(
        address=f"{info.host}:{info.port}",
        pooler=info.backend_pid != server_pid,
        max_connections=max_connections,
        reserved_connections=superuser_reserved + reserved,
    )


def server_figures(upstream: Upstream | None) -> dict[str, Any] | None:
    """The ``server`` entry of a pool's figures (None until its first connection was probed)."""
    if upstream is None:
        return None
    return {
        "address": upstream.address,
        "behind_pooler": upstream.pooler,
        "max_connections": upstream.max_connections,
        "reserved_connections": upstream.reserved_connections,
        "budget": upstream.budget,
    }


def add_server_sums(pools: Iterable[Mapping[str, Any]]) -> None:
    """Give each pool's ``server`` entry the totals of this process's pools on the same server.

    ``pools``: the pools' figures (``pool_size``, ``max_overflow``, ``server``); ``pools`` and
    ``pools_max`` (the sum of their bounds, ``size + max overflow`` each) are added in place.
    """
    totals: dict[str, list[int]] = {}
    listed = [figures for figures in pools if figures.get("server")]
    for figures in listed:
        total = totals.setdefault(figures["server"]["address"], [0, 0])
        total[0] += 1
        total[1] += figures["pool_size"] + figures["max_overflow"]
    for figures in listed:
        count, bound_sum = totals[figures["server"]["address"]]
        figures["server"].update(pools=count, pools_max=bound_sum)
