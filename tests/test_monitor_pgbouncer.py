"""What a pool runs behind (PgBouncer's pool mode, detected), and alerts that name the right knob for it.

Real PostgreSQL servers and real PgBouncers started by the tests; the pools' first connection finds out
whether a pooler answered (its cancel key's pid is not the server's backend pid) and reads the server's
``max_connections`` once.
"""

from __future__ import annotations

import pytest

import db_utils
from db_utils.monitor import Monitor, make_wsgi_app
from tests.monitor_support import PostgresLoad, request, require, wsgi_server

pytestmark = pytest.mark.postgres


def only_pool(url_part):
    (figures,) = [f for name, f in db_utils.pool_status()["postgres"].items() if url_part in name]
    return figures


def use(url=None):
    with db_utils.get_pooled_connection(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")


def server_setting(postgres, name):
    ((value,),) = postgres.query(f"SELECT current_setting('{name}')::int")
    return value


def test_direct_postgresql_pool_shows_no_pooler_and_the_servers_budget(pg_pools):
    db_utils.get_connection_pool(pool_size=3, max_overflow=2)
    figures = only_pool(f":{pg_pools.port}/")
    assert figures["server"] is None  # not connected yet: nothing read, nothing made up
    assert figures["pgbouncer"]["detected"] is None
    use()
    figures = only_pool(f":{pg_pools.port}/")
    assert figures["pgbouncer"]["detected"] is False
    assert figures["pgbouncer"]["pooling"] is None
    assert figures["pgbouncer"]["db_pool_mode"] == "local"
    assert "DISCARD ALL" in figures["pgbouncer"]["reset_on_return"]
    max_connections = server_setting(pg_pools, "max_connections")
    reserved = server_setting(pg_pools, "superuser_reserved_connections")
    assert figures["server"] == {
        "address": f"127.0.0.1:{pg_pools.port}",
        "behind_pooler": False,
        "max_connections": max_connections,
        "reserved_connections": reserved,
        "budget": max_connections - reserved,
        "pools": 1,
        "pools_max": 5,
    }


def test_transaction_pooling_pgbouncer_is_detected_and_shown_in_status_json_and_prometheus(
    pg_pools, pgbouncer, clean_env
):
    prometheus = require("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families

    from db_utils.monitor.prometheus import register_collector

    clean_env.setenv("DB_POOL_MODE", "pgbouncer")
    use(pgbouncer.url)
    figures = only_pool(f":{pgbouncer.port}/")
    assert figures["pgbouncer"]["detected"] is True
    assert figures["pgbouncer"]["pooling"] == "transaction"
    assert "DEALLOCATE ALL" in figures["pgbouncer"]["session_state"]
    assert "ROLLBACK" in figures["pgbouncer"]["prepared_statements"]
    assert figures["pgbouncer"]["reset_on_return"].startswith("rollback only")
    assert "LISTEN" in figures["pgbouncer"]["refused"]
    # The budget read through the bouncer is the server's behind it.
    assert figures["server"]["behind_pooler"] is True
    assert figures["server"]["address"] == f"127.0.0.1:{pgbouncer.port}"
    assert figures["server"]["max_connections"] == server_setting(pg_pools, "max_connections")

    with wsgi_server(make_wsgi_app(monitor=Monitor(databases=()))) as (base, _log):
        document = request(base + "/connection-pools").json()
    (pool,) = [p for p in document["pools"] if f":{pgbouncer.port}/" in p["name"]]
    assert pool["pgbouncer"] == figures["pgbouncer"]
    (server,) = [s for s in document["servers"] if s["address"] == figures["server"]["address"]]
    assert server["pool_names"] == [pool["name"]]

    registry = prometheus.CollectorRegistry()
    register_collector(registry)
    text = prometheus.generate_latest(registry).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    (info,) = [s for s in families["poolshift_pgbouncer_info"].samples if s.labels["pool"] == pool["name"]]
    assert (info.labels["pooling"], info.labels["detected"], info.labels["db_pool_mode"]) == (
        "transaction",
        "true",
        "pgbouncer",
    )
    budget = families["poolshift_server_connections_budget"]
    (sample,) = [s for s in budget.samples if s.labels["server"] == server["address"]]
    assert sample.value == server["budget"]


def test_local_mode_behind_session_pooling_pgbouncer_is_shown_as_session_pooling(pg_pools, pgbouncer_factory):
    bouncer = pgbouncer_factory(pool_mode="session", default_pool_size=5)
    use(bouncer.url)
    figures = only_pool(f":{bouncer.port}/")
    assert (figures["pgbouncer"]["detected"], figures["pgbouncer"]["pooling"]) == (True, "session")
    assert figures["pgbouncer"]["db_pool_mode"] == "local"


def test_the_server_is_probed_once_per_pool_not_per_connection_or_checkout(postgres_factory, clean_env):
    from db_utils.postgres.upstream import PROBE

    server = postgres_factory(max_connections=20, extra_settings={"log_statement": "all"})
    db_utils.dispose_pools()
    try:
        db_utils.get_connection_pool(server.url, pool_size=3, max_overflow=0)
        load = PostgresLoad(3, server.url)  # three connections opened
        load.release()
        for _ in range(10):
            use(server.url)
        assert only_pool(f":{server.port}/")["connections_created"] == 3
        log = (server.tmpdir / "postgres.log").read_text(errors="replace")
        assert log.count(PROBE) == 1
    finally:
        db_utils.dispose_pools()


def high_utilization_advice(url):
    load = PostgresLoad(4, url)  # 4 of 5: 80 %
    try:
        alerts = Monitor(databases=()).alerts()["alerts"]
    finally:
        load.release()
    (alert,) = [a for a in alerts if a["condition"] == "high_utilization"]
    return alert["recommendation"]


def test_recommendations_name_pgbouncer_knobs_behind_transaction_pooling(pg_pools, pgbouncer, clean_env):
    db_utils.get_connection_pool(pgbouncer.url, pool_size=4, max_overflow=1, mode="pgbouncer")
    advice = high_utilization_advice(pgbouncer.url)
    assert "default_pool_size" in advice
    assert "max_client_conn" in advice
    assert "SHOW POOLS" in advice
    assert "processes x 6 within PgBouncer's max_client_conn" in advice
    budget = server_setting(pg_pools, "max_connections") - server_setting(
        pg_pools, "superuser_reserved_connections"
    )
    assert "bouncers x default_pool_size within the server's max_connections" in advice
    assert f": {budget}." in advice
    assert "processes x 6 below the server's max_connections" not in advice


def test_recommendations_behind_session_pooling_count_server_connections(pg_pools, pgbouncer_factory):
    bouncer = pgbouncer_factory(pool_mode="session", default_pool_size=10)
    db_utils.get_connection_pool(bouncer.url, pool_size=4, max_overflow=1)
    advice = high_utilization_advice(bouncer.url)
    assert "session pooling every client connection holds a server connection" in advice
    assert "processes x 6 within PgBouncer's max_client_conn and its default_pool_size" in advice


def test_recommendations_without_pgbouncer_give_the_servers_numbers(pg_pools):
    db_utils.get_connection_pool(pool_size=4, max_overflow=1)
    advice = high_utilization_advice(None)
    max_connections = server_setting(pg_pools, "max_connections")
    reserved = server_setting(pg_pools, "superuser_reserved_connections")
    assert (
        f"keep processes x 6 below the server's max_connections ({max_connections}) minus its {reserved} "
        f"reserved connections: {max_connections - reserved}, or put PgBouncer in front."
    ) in advice
    assert "default_pool_size" not in advice


def test_max_client_conn_reached_gives_a_connection_failures_alert_naming_it(pg_pools, pgbouncer_factory):
    import psycopg2

    bouncer = pgbouncer_factory(pool_mode="transaction", default_pool_size=5, max_client_conn=2)
    db_utils.get_connection_pool(bouncer.url, pool_size=3, max_overflow=0, mode="pgbouncer")
    monitor = Monitor(databases=())
    monitor.alerts()  # the baseline: no failure counted yet
    load = PostgresLoad(2, bouncer.url)
    try:
        with pytest.raises(psycopg2.OperationalError, match="max_client_conn"):
            use(bouncer.url)
        alerts = monitor.alerts()["alerts"]
    finally:
        load.release()
    (alert,) = [a for a in alerts if a["condition"] == "connection_failures"]
    assert "PgBouncer's max_client_conn: raise it" in alert["recommendation"]
    assert "too many clients" not in alert["recommendation"]
