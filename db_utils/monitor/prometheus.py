"""Prometheus metrics for every pool, through ``prometheus_client`` (the ``poolshift[prometheus]`` extra).

A custom collector: nothing is counted twice, each scrape reads ``pool_status()`` once and yields one
family per :data:`db_utils.monitor.figures.FIGURES` row that has a metric name (HikariCP's names with a
``poolshift_`` prefix), one sample per pool labelled ``kind`` and ``pool``. A figure a pool does not
report is left out rather than exported as zero; ratios (utilization, reuse rate) are left to PromQL.
What a PostgreSQL pool runs behind is ``poolshift_pgbouncer_info`` (labels ``db_pool_mode``, ``pooling``,
``detected``), and the servers' budgets are :data:`SERVER_GAUGES`, labelled ``server`` (host:port).
Nothing is registered on import: call :func:`register_collector` once at startup.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

import db_utils
from db_utils.monitor.figures import FIGURES, Figure, Pool, read_pools, read_servers

LABELS = ("kind", "pool")
PGBOUNCER_INFO = (
    "poolshift_pgbouncer",
    "PgBouncer pool mode a PostgreSQL pool works with (pooling: "
    "transaction, session or none), DB_POOL_MODE, and whether a pooler was detected",
)
#: Per server (the ``server`` entry of ``/connection-pools``): key, metric name, help.
SERVER_GAUGES = (
    ("max_connections", "poolshift_server_max_connections", "The server's max_connections"),
    ("budget", "poolshift_server_connections_budget",
     "max_connections minus the reserved connections: what ordinary roles may open"),
    ("pools_max", "poolshift_server_pools_max",
     "Sum of the bounds (size + max overflow) of this process's pools on the server"),
)  # fmt: skip


class PoolshiftCollector(Collector):
    """Yields the pools' figures at each scrape."""

    def collect(self) -> Iterator[Metric]:
        pools = read_pools(db_utils.pool_status())
        for figure in _exported():
            family = _family(figure)
            for pool in pools:
                value = pool[figure.key]
                if value is not None:
                    family.add_metric([pool["kind"], pool["name"]], float(value))
            if family.samples:
                yield family
        yield from _descriptions(pools)

    def describe(self) -> Iterator[Metric]:
        """The families without samples: lets the registry check names without reading the pools."""
        for figure in _exported():
            yield _family(figure)
        yield from _descriptions([])


def _descriptions(pools: list[Pool]) -> Iterator[Metric]:
    """The PgBouncer info of each PostgreSQL pool, and each server's budget gauges."""
    info = InfoMetricFamily(*PGBOUNCER_INFO, labels=LABELS)
    for pool in pools:
        pgbouncer = pool["pgbouncer"]
        if pgbouncer:
            values: dict[str, Any] = {
                "db_pool_mode": pgbouncer["db_pool_mode"],
                "pooling": pgbouncer["pooling"] or "none",
                "detected": {True: "true", False: "false", None: "unknown"}[pgbouncer["detected"]],
            }
            info.add_metric([pool["kind"], pool["name"]], values)
    yield info
    servers = read_servers(pools)
    for key, name, help_text in SERVER_GAUGES:
        gauge = GaugeMetricFamily(name, help_text, labels=("server",))
        for server in servers:
            gauge.add_metric([server["address"]], float(server[key]))
        yield gauge


def register_collector(registry: CollectorRegistry = REGISTRY) -> PoolshiftCollector:
    """Register a :class:`PoolshiftCollector` on ``registry`` (default: prometheus_client's global one).

    Registering twice on one registry raises ``ValueError`` (duplicated timeseries), as prometheus_client
    does for any collector; unregister with ``registry.unregister(collector)``.
    """
    collector = PoolshiftCollector()
    registry.register(collector)
    return collector


def _exported() -> Iterator[Figure]:
    return (figure for figure in FIGURES if figure.metric is not None)


def _family(figure: Figure) -> GaugeMetricFamily | CounterMetricFamily:
    assert figure.metric is not None
    family_type = GaugeMetricFamily if figure.kind == "gauge" else CounterMetricFamily
    return family_type(figure.metric, figure.help, labels=LABELS)
