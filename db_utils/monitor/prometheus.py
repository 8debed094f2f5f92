"""Prometheus metrics for every pool, through ``prometheus_client`` (the ``poolshift[prometheus]`` extra).

A custom collector: nothing is counted twice, each scrape reads ``pool_status()`` once and yields one
family per :data:`db_utils.monitor.figures.FIGURES` row that has a metric name (HikariCP's names with a
``poolshift_`` prefix), one sample per pool labelled ``kind`` and ``pool``. A figure a pool does not
report is left out rather than exported as zero; ratios (utilization, reuse rate) are left to PromQL.
Nothing is registered on import: call :func:`register_collector` once at startup.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

import db_utils
from db_utils.monitor.figures import FIGURES, Figure, read_pools

LABELS = ("kind", "pool")


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

    def describe(self) -> Iterator[Metric]:
        """The families without samples: lets the registry check names without reading the pools."""
        for figure in _exported():
            yield _family(figure)


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
