"""Alerts and lifecycle lines driven by real load on a real PostgreSQL pool.

Where an alert's life depends on minutes passing (the counter window, the log rate limit), the AlertBook
is given a clock the test moves; everything else (pools, connections, servers) is real.
"""

from __future__ import annotations

import logging
import re
import threading

import pytest

import db_utils
from db_utils.monitor import AlertBook, Monitor, make_wsgi_app, watch
from db_utils.monitor.conditions import smallest_bound_below_threshold
from tests.monitor_support import STARTUP_DEADLINE, PostgresLoad, request, wsgi_server
from tests.pg_helpers import fair_pool, present

pytestmark = pytest.mark.postgres


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def events(caplog, name):
    return [r.poolshift for r in caplog.records if getattr(r, "poolshift", {}).get("event") == name]


def about_postgres(record):
    fields = record.poolshift
    return fields.get("kind") == "postgres" or fields.get("component", "").startswith("postgres:")


@pytest.fixture
def monitor_log(caplog):
    with caplog.at_level(logging.INFO, logger="db_utils.monitor"):
        yield caplog


def test_utilization_alert_is_raised_under_load_logged_once_and_cleared_on_release(pg_pools, monitor_log):
    db_utils.get_connection_pool(pool_size=4, max_overflow=1)
    with wsgi_server(make_wsgi_app(monitor=Monitor())) as (base, _log):
        assert request(base + "/alerts").json() == {"alerts": []}
        load = PostgresLoad(4)  # 4 of 5 connections busy: 80 %
        try:
            polls = [request(base + "/alerts").json()["alerts"] for _ in range(3)]
            health = request(base + "/system-health")
        finally:
            load.release()
        after = request(base + "/alerts").json()["alerts"]
        health_after = request(base + "/system-health")

    for alerts in polls:
        (alert,) = alerts
        assert alert["severity"] == "warning"
        assert alert["condition"] == "high_utilization"
        assert alert["component"].startswith("postgres:postgresql+psycopg2://")
        assert alert["message"] == "pool utilization 80%: 4 of 5 connections checked out"
        assert "raise DB_POOL_SIZE by 1, from 4 to 5" in alert["recommendation"]
        assert "processes x 6 below the server's max_connections" in alert["recommendation"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", alert["since"])
    assert health.status == 200
    assert health.json()["status"] == "degraded"
    assert [c["alerts"] for c in health.json()["components"] if c["kind"] == "postgres"] == [
        ["high_utilization"]
    ]
    assert after == []
    assert health_after.status == 200
    assert health_after.json()["status"] == "healthy"
    (raised,) = events(monitor_log, "alert_raised")  # three polls while it held: one line
    assert raised["condition"] == "high_utilization"
    assert raised["severity"] == "warning"
    (cleared,) = events(monitor_log, "alert_cleared")
    assert cleared["component"] == raised["component"]


def test_a_flapping_alert_is_listed_each_time_but_logged_once_per_interval(pg_pools, monitor_log):
    clock = Clock()
    monitor = Monitor(databases=(), alert_book=AlertBook(notify_interval=300, clock=clock))
    db_utils.get_connection_pool(pool_size=1, max_overflow=0)

    def flap() -> list[str]:
        held = db_utils.get_postgres_connection()
        assert held is not None
        conditions = [alert["condition"] for alert in monitor.alerts()["alerts"]]
        held.close()
        assert monitor.alerts() == {"alerts": []}
        return conditions

    assert flap() == ["high_utilization"]
    clock.now += 10
    assert flap() == ["high_utilization"]  # listed again, not logged again
    assert len(events(monitor_log, "alert_raised")) == 1
    assert len(events(monitor_log, "alert_cleared")) == 1
    clock.now += 300
    assert flap() == ["high_utilization"]
    assert len(events(monitor_log, "alert_raised")) == 2
    assert len(events(monitor_log, "alert_cleared")) == 2


def test_timeouts_alert_is_critical_for_one_window_then_clears(pg_pools):
    clock = Clock()
    monitor = Monitor(alert_book=AlertBook(window=60, clock=clock))
    db_utils.get_connection_pool(pool_size=1, max_overflow=0, timeout=0.05)
    assert monitor.alerts() == {"alerts": []}  # the counters' baseline
    held = db_utils.get_postgres_connection()
    assert held is not None
    # The pool's only connection is held: this checkout must time out, however loaded the machine is.
    with pytest.raises(db_utils.PoolTimeoutError), db_utils.get_pooled_connection():
        pass
    held.close()

    (alert,) = monitor.alerts()["alerts"]
    assert alert["severity"] == "critical"
    assert alert["condition"] == "checkout_timeouts"
    assert alert["message"] == "1 checkout(s) timed out in the last 60 s: all 1 connections were in use"
    assert "raise DB_POOL_SIZE by 1 (a quarter of the bound), from 1 to 2" in alert["recommendation"]
    assert "DB_POOL_TIMEOUT" in alert["recommendation"]
    health = monitor.system_health()
    assert health["status"] == "unhealthy"  # the ping works; the critical alert decides
    clock.now += 59
    assert [a["condition"] for a in monitor.alerts()["alerts"]] == ["checkout_timeouts"]
    clock.now += 2
    assert monitor.alerts() == {"alerts": []}
    assert monitor.system_health()["status"] == "healthy"


def test_broken_connections_after_a_server_side_kill_raise_an_invalidation_storm(pg_pools, clean_env):
    clean_env.setenv("DB_POOL_PING_AFTER", "0")  # every checkout validates: the kill is noticed at once
    db_utils.get_connection_pool(pool_size=3, max_overflow=0)
    PostgresLoad(3).release()  # three idle connections
    monitor = Monitor(databases=())
    assert monitor.alerts() == {"alerts": []}
    assert pg_pools.terminate_backends() == 3
    PostgresLoad(3).release()  # each worker's ping fails on a killed connection; the pool replaces it

    (alert,) = monitor.alerts()["alerts"]
    assert alert["severity"] == "warning"
    assert alert["condition"] == "invalidation_storm"
    assert alert["message"] == "3 pooled connections found broken in the last 60 s"
    assert "DB_POOL_RECYCLE" in alert["recommendation"]


def pool_events(caplog, pool):
    """The lifecycle lines of one pool (earlier tests' pools may be disposed meanwhile)."""
    mine = [r for r in caplog.records if getattr(r, "poolshift", {}).get("pool") == pool]
    return [r for r in mine if r.poolshift["event"].startswith("pool_")]


def lifecycle_state(monitor, name):
    (pool,) = [pool for pool in monitor.connection_pools()["pools"] if pool["name"] == name]
    return pool["lifecycle"]["state"]


def test_lifecycle_lines_once_per_change_never_per_checkout(pg_pools, monitor_log):
    from tests.test_pool_fairness import wait_until

    monitor = Monitor(databases=())  # the lifecycle lines are logged from the first monitor on
    db_utils.get_connection_pool(pool_size=2, max_overflow=0, timeout=60)
    (name,) = db_utils.pool_status()["postgres"]
    for _ in range(20):
        with db_utils.get_pooled_connection() as conn:
            conn.cursor().execute("SELECT 1")
    load = PostgresLoad(2)  # every connection in use, but nobody waits yet: not exhausted
    assert [r.poolshift["event"] for r in pool_events(monitor_log, name)] == ["pool_created"]
    waiter = threading.Thread(target=lambda: present(db_utils.get_postgres_connection()).close())
    waiter.start()
    wait_until(lambda: len(pool_events(monitor_log, name)) == 2, "the queued checkout is logged")
    assert lifecycle_state(monitor, name) == "exhausted"
    load.release()  # the first connection returned goes to the waiter: nobody waits any more
    waiter.join(STARTUP_DEADLINE)
    assert lifecycle_state(monitor, name) == "serving"
    db_utils.dispose_pools()

    # Four lines for 23 checkouts, none of them from an observation: the pool notified each change.
    records = pool_events(monitor_log, name)
    assert [r.poolshift["event"] for r in records] == [
        "pool_created",
        "pool_exhausted",
        "pool_recovered",
        "pool_disposed",
    ]
    created, exhausted, recovered, disposed = (r.poolshift for r in records)
    assert (created["kind"], created["size"], created["max"], created["mode"]) == ("postgres", 2, 2, "local")
    assert (exhausted["active"], exhausted["max"], exhausted["waiting"]) == (2, 2, 1)
    assert (recovered["waiting"], recovered["waits"], recovered["timeouts"]) == (0, 1, 0)
    assert disposed["checkouts"] == 23
    line = records[1].getMessage()
    assert line.startswith(f"event=pool_exhausted kind=postgres pool={name} ")
    assert "active=2 max=2 waiting=1 waits=0 timeouts=0" in line
    assert records[1].levelno == logging.WARNING


def test_a_checkout_that_times_out_is_logged_without_any_observation(pg_pools, monitor_log):
    Monitor(databases=())
    db_utils.get_connection_pool(pool_size=1, max_overflow=0, timeout=0.05)
    (name,) = db_utils.pool_status()["postgres"]
    held = db_utils.get_postgres_connection()
    assert held is not None
    with pytest.raises(db_utils.PoolTimeoutError), db_utils.get_pooled_connection():
        pass
    held.close()
    exhausted, recovered = events(monitor_log, "pool_exhausted"), events(monitor_log, "pool_recovered")
    assert [(e["pool"], e["active"], e["waiting"], e["timeouts"]) for e in exhausted] == [(name, 1, 1, 0)]
    # The waiter gave up: nobody waits any more, though the one connection is still checked out.
    assert [(e["pool"], e["active"], e["waiting"], e["timeouts"]) for e in recovered] == [(name, 1, 0, 1)]


def test_the_watcher_logs_alerts_nobody_asked_about(pg_pools):
    db_utils.get_connection_pool(pool_size=2, max_overflow=0)
    seen = {name: threading.Event() for name in ("alert_raised", "alert_cleared")}

    class Catch(logging.Handler):
        def emit(self, record):
            event = getattr(record, "poolshift", {}).get("event")
            if event in seen:
                seen[event].set()

    logger = logging.getLogger("db_utils.monitor")
    handler, level = Catch(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    watcher = watch(interval=0.05, monitor=Monitor(databases=()))
    try:
        load = PostgresLoad(2)
        assert seen["alert_raised"].wait(STARTUP_DEADLINE)
        load.release()
        assert seen["alert_cleared"].wait(STARTUP_DEADLINE)
    finally:
        watcher.stop(STARTUP_DEADLINE)
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert not watcher.is_alive()


@pytest.mark.parametrize(("active", "bound"), [(0, 1), (1, 2), (4, 6), (8, 11), (80, 101)])
def test_recommended_bound_is_the_smallest_below_the_threshold(active, bound):
    assert smallest_bound_below_threshold(active) == bound
    assert active / bound < 0.8
    assert bound == 1 or active / (bound - 1) >= 0.8


def test_failed_connects_raise_a_connection_failures_alert_and_pending_counts_waiters(pg_pools):
    import psycopg2

    from testservers.ports import refused_port

    clock = Clock()
    monitor = Monitor(databases=(), alert_book=AlertBook(window=60, clock=clock))
    with refused_port() as port:
        refused = pg_pools.url.replace(f":{pg_pools.port}/", f":{port}/")
        db_utils.get_connection_pool(refused)
        assert monitor.alerts() == {"alerts": []}
        with pytest.raises(psycopg2.OperationalError), db_utils.get_pooled_connection(refused):
            pass

    (alert,) = monitor.alerts()["alerts"]
    assert (alert["condition"], alert["severity"]) == ("connection_failures", "critical")
    assert alert["message"] == "1 attempt(s) to open a connection failed in the last 60 s"
    (figures,) = (f for url, f in db_utils.pool_status()["postgres"].items() if str(pg_pools.port) not in url)
    assert (figures["connect_failures"], figures["checkouts"], figures["checkins"]) == (1, 0, 0)


def test_pending_is_the_number_of_threads_waiting_in_line(pg_pools):
    from tests.test_pool_fairness import wait_until

    engine = db_utils.get_connection_pool(pool_size=1, max_overflow=0, timeout=60)
    held = db_utils.get_postgres_connection()
    assert held is not None
    waiter = threading.Thread(target=lambda: present(db_utils.get_postgres_connection()).close())
    waiter.start()
    wait_until(lambda: fair_pool(engine).waiting() == 1, "the second borrower is in line")
    (figures,) = db_utils.pool_status()["postgres"].values()
    assert figures["waiting"] == 1
    held.close()
    waiter.join()
    (figures,) = db_utils.pool_status()["postgres"].values()
    assert figures["waiting"] == 0
