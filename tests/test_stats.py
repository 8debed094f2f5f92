"""pool_status / pool_status_line / pool_alerts over the PostgreSQL pools and other registered sources."""

from __future__ import annotations

import logging

import pytest

import db_utils
from db_utils import stats
from tests.pg_helpers import present

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def pg(pg_pools):
    db_utils.pool_alerts()  # forget alert baselines of earlier tests
    return pg_pools


def test_counters_contract_is_unchanged():
    counters = stats.PoolCounters()
    counters.add(checkouts=4, reuses=3)
    snapshot = counters.snapshot()
    assert snapshot["reuse_rate"] == 0.75
    assert {
        "connections_created",
        "checkouts",
        "reuses",
        "recycled",
        "invalidated",
        "waits",
        "timeouts",
    } <= set(snapshot)


def test_status_includes_every_registered_source(monkeypatch):
    monkeypatch.setitem(stats._sources, "sqlite", lambda: {"requests": 3})
    with db_utils.get_pooled_connection() as conn:
        conn.cursor().execute("SELECT 1")
    status = db_utils.pool_status()
    assert status["sqlite"] == {"requests": 3}
    (figures,) = status["postgres"].values()
    for key in (
        "connections_created",
        "checkouts",
        "reuses",
        "recycled",
        "invalidated",
        "waits",
        "wait_time_total",
        "timeouts",
        "checked_out",
        "overflow",
        "utilization",
        "reuse_rate",
        "discarded_dirty",
    ):
        assert key in figures
    assert figures["checkouts"] == 1
    assert "sqlite[requests=3]" in db_utils.pool_status_line()


def test_status_line_is_one_line_with_the_figures(pg):
    held = db_utils.get_postgres_connection()
    assert held is not None
    line = db_utils.pool_status_line()
    assert "\n" not in line
    assert f"127.0.0.1:{pg.port}" in line
    assert "out=1/30" in line
    held.close()


def test_status_line_without_postgres_pools_has_no_postgres_part():
    assert "postgres[" not in db_utils.pool_status_line()


def test_high_utilization_alert_is_returned_and_logged(caplog):
    db_utils.get_connection_pool(pool_size=2, max_overflow=0)
    held = [present(db_utils.get_postgres_connection()) for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger="db_utils.alerts"):
        alerts = db_utils.pool_alerts()
    assert len(alerts) == 1
    assert "utilization 100%" in alerts[0]
    assert alerts[0] in caplog.text
    for conn in held:
        conn.close()
    assert db_utils.pool_alerts() == []


def test_timeouts_and_invalidations_are_alerted_once(pg, clean_env):
    clean_env.setenv("DB_POOL_PING_AFTER", "0")
    db_utils.get_connection_pool(pool_size=1, max_overflow=0, timeout=0.05)
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    with pytest.raises(db_utils.PoolTimeoutError), db_utils.get_pooled_connection():
        pass
    conn.close()
    pg.terminate_backends()
    with db_utils.get_pooled_connection() as conn:  # ping fails -> invalidated
        conn.cursor().execute("SELECT 1")
    alerts = db_utils.pool_alerts()
    assert any("1 checkout timeout(s)" in alert for alert in alerts)
    assert any("1 broken connection(s) invalidated" in alert for alert in alerts)
    assert db_utils.pool_alerts() == []
