"""One budget across pools: the bounds of this process's pools on one server, against its max_connections.

``db_utils.postgres.connect`` makes one pool per distinct set of parameters; each is bounded, but their
bounds add up. Real servers; the pools differ by ``application_name`` as a legacy helper's calls might.
"""

from __future__ import annotations

import pytest

import db_utils
from db_utils.monitor import Monitor
from db_utils.postgres import connect

pytestmark = pytest.mark.postgres


def open_pools(server, names):
    for name in names:
        conn = connect(server.dsn, application_name=name)
        conn.cursor().execute("SELECT 1")
        conn.close()


def budget_alerts(monitor):
    return [a for a in monitor.alerts()["alerts"] if a["condition"] == "server_budget_exceeded"]


@pytest.fixture
def small_server(postgres_factory, clean_env):
    server = postgres_factory(max_connections=20)  # superuser_reserved_connections=1: a budget of 19
    clean_env.setenv("DB_POOL_SIZE", "4")
    clean_env.setenv("DB_MAX_OVERFLOW", "2")  # 6 per pool
    db_utils.dispose_pools()
    yield server
    db_utils.dispose_pools()


def test_pools_on_one_server_raise_an_alert_once_their_bounds_exceed_its_budget(small_server):
    monitor = Monitor(databases=())
    open_pools(small_server, ["a", "b", "c"])  # 18 <= 19
    assert budget_alerts(monitor) == []
    (server,) = monitor.connection_pools()["servers"]
    assert (server["budget"], server["pools"], server["pools_max"]) == (19, 3, 18)

    open_pools(small_server, ["d"])  # 24 > 19
    (alert,) = budget_alerts(monitor)
    address = f"127.0.0.1:{small_server.port}"
    assert alert["component"] == f"postgres-server:{address}"
    assert alert["severity"] == "warning"
    assert alert["message"].startswith(f"4 pool(s) of this process may open 24 connections to {address}")
    assert "max_connections 20 minus 1 reserved" in alert["message"]
    assert "at most 4 per pool" in alert["recommendation"]  # 19 // 4
    assert "DB_CONNECT_MAX_POOLS" in alert["recommendation"]
    assert "PgBouncer" in alert["recommendation"]
    # Every pool's status carries the server's totals, read once per pool.
    figures = db_utils.pool_status()["postgres"].values()
    assert {(f["server"]["pools"], f["server"]["pools_max"]) for f in figures} == {(4, 24)}

    db_utils.dispose_pools()
    assert budget_alerts(monitor) == []  # cleared: no pool is left


def test_pools_behind_pgbouncer_are_not_held_to_the_servers_budget(pg_pools, pgbouncer_factory, clean_env):
    bouncer = pgbouncer_factory(pool_mode="transaction", default_pool_size=5)
    clean_env.setenv("DB_POOL_MODE", "pgbouncer")
    clean_env.setenv("DB_POOL_SIZE", "40")
    clean_env.setenv("DB_MAX_OVERFLOW", "40")  # 80 per pool against 100 max_connections
    monitor = Monitor(databases=())
    open_pools(bouncer, ["a", "b"])
    (server,) = [
        s for s in monitor.connection_pools()["servers"] if s["address"].endswith(f":{bouncer.port}")
    ]
    assert (server["behind_pooler"], server["pools_max"]) == (True, 160)
    assert budget_alerts(monitor) == []
