"""The Prometheus collector: scraped over HTTP from prometheus_client's own exposition app, parsed with
prometheus_client's parser, compared with the state of a real pool under load."""

from __future__ import annotations

import pytest

import db_utils
from db_utils.monitor.figures import FIGURES
from tests.monitor_support import PostgresLoad, request, require, wsgi_server


@pytest.fixture
def prometheus():
    return require("prometheus_client")


def scrape(prometheus, registry):
    from prometheus_client.parser import text_string_to_metric_families

    with wsgi_server(prometheus.make_wsgi_app(registry)) as (base, _log):
        reply = request(base + "/metrics")
    assert reply.status == 200
    return {family.name: family for family in text_string_to_metric_families(reply.body.decode())}


def postgres_value(family, port):
    (value,) = [
        s.value for s in family.samples if s.labels["kind"] == "postgres" and f":{port}/" in s.labels["pool"]
    ]
    return value


@pytest.mark.postgres
def test_scraped_metrics_match_the_pool_under_load(pg_pools, prometheus):
    from db_utils.monitor.prometheus import register_collector

    registry = prometheus.CollectorRegistry()
    register_collector(registry)
    # max_connecting=5: all five open at once, so the only checkout that waits is the one that times out.
    db_utils.get_connection_pool(pool_size=3, max_overflow=2, timeout=0.05, max_connecting=5)
    load = PostgresLoad(5)  # every connection busy: the next checkout times out
    try:
        with pytest.raises(db_utils.PoolTimeoutError), db_utils.get_pooled_connection():
            pass
        families = scrape(prometheus, registry)
    finally:
        load.release()
    after = scrape(prometheus, registry)

    port = pg_pools.port
    gauges = {
        "poolshift_connections_active": 5,
        "poolshift_connections_idle": 0,
        "poolshift_connections": 5,
        "poolshift_connections_max": 5,
        "poolshift_connections_size": 3,
    }
    for name, expected in gauges.items():
        assert families[name].type == "gauge"
        assert postgres_value(families[name], port) == expected, name
    counters = {
        "poolshift_connections_timeout": 1,
        "poolshift_connections_creation": 5,
        "poolshift_connections_acquired": 5,
        "poolshift_connections_wait": 1,
    }
    for name, expected in counters.items():
        assert families[name].type == "counter"
        assert families[name].samples[0].name == f"{name}_total"
        assert postgres_value(families[name], port) == expected, name
    assert postgres_value(families["poolshift_connections_wait_seconds"], port) > 0
    assert postgres_value(after["poolshift_connections_active"], port) == 0
    assert postgres_value(after["poolshift_connections_idle"], port) == 3  # overflow closed on return


def test_help_texts_and_names_come_from_the_figures_table(prometheus):
    from db_utils.monitor.prometheus import PGBOUNCER_INFO, SERVER_GAUGES, register_collector

    registry = prometheus.CollectorRegistry()
    collector = register_collector(registry)
    described = {family.name: family for family in collector.describe()}
    exported = {f.metric: f for f in FIGURES if f.metric}
    descriptions = {PGBOUNCER_INFO[0]} | {name for _key, name, _help in SERVER_GAUGES}
    assert set(described) == set(exported) | descriptions
    for name, family in described.items():
        if name in descriptions:
            continue
        assert family.documentation == exported[name].help
        assert family.type == exported[name].kind
        assert name.startswith("poolshift_")


def test_figures_no_pool_reports_are_left_out_not_zero(prometheus, tmp_path):
    import db_utils.sqlite
    from db_utils.monitor.prometheus import register_collector

    db_utils.sqlite.dispose()
    conn = db_utils.sqlite.connect(str(tmp_path / "metrics.db"))
    conn.execute("SELECT 1")
    conn.close()
    registry = prometheus.CollectorRegistry()
    register_collector(registry)
    try:
        families = scrape(prometheus, registry)
    finally:
        db_utils.sqlite.dispose()

    sqlite = [s for s in families["poolshift_connections_idle"].samples if s.labels["kind"] == "sqlite"]
    assert [s.value for s in sqlite] == [1]
    assert "poolshift_connections_pending" not in families  # no pool counts waiting callers yet
    bounds = families["poolshift_connections_max"].samples if "poolshift_connections_max" in families else []
    assert not any(s.labels["kind"] == "sqlite" for s in bounds)  # SQLite pools never limit borrowing


def test_registration_is_explicit_and_once_per_registry(prometheus):
    from db_utils.monitor.prometheus import register_collector

    registry = prometheus.CollectorRegistry()
    assert "poolshift_connections_active" not in prometheus.generate_latest(registry).decode()
    collector = register_collector(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        register_collector(registry)
    registry.unregister(collector)
    register_collector(registry)
