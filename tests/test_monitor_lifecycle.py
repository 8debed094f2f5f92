"""The pools' lifecycle notifications (db_utils.stats.add_listener), on real PostgreSQL pools."""

from __future__ import annotations

import threading

import pytest

import db_utils
from db_utils import stats
from db_utils.postgres import connect
from tests.monitor_support import STARTUP_DEADLINE, PostgresLoad
from tests.pg_helpers import fair_pool, present
from tests.test_pool_fairness import wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def notified():
    seen: list[stats.PoolEvent] = []
    remove = stats.add_listener(seen.append)
    yield seen
    remove()


def of(seen, pool):
    return [(e.event, dict(e.figures)) for e in seen if e.pool == pool]


def test_a_pool_notifies_created_exhausted_recovered_disposed_and_nothing_per_checkout(pg_pools, notified):
    engine = db_utils.get_connection_pool(pool_size=1, max_overflow=1, timeout=60)
    (name,) = db_utils.pool_status()["postgres"]
    for _ in range(50):
        with db_utils.get_pooled_connection() as conn:
            conn.cursor().execute("SELECT 1")
    assert [event for event, _ in of(notified, name)] == ["created"]

    load = PostgresLoad(2)
    waiters = []
    for n in range(1, 4):  # one at a time, so the first one's notification sees exactly one in line
        waiters.append(threading.Thread(target=lambda: present(db_utils.get_postgres_connection()).close()))
        waiters[-1].start()
        wait_until(lambda: fair_pool(engine).waiting() == n and len(of(notified, name)) == 2, f"{n} in line")
    load.release()
    for waiter in waiters:
        waiter.join(STARTUP_DEADLINE)
    db_utils.dispose_pools()

    # Three checkouts queued: one exhaustion, one recovery when the line emptied.
    created, exhausted, recovered, disposed = of(notified, name)
    assert created == ("created", {"size": 1, "max": 2, "mode": "local"})
    assert exhausted == ("exhausted", {"active": 2, "max": 2, "waiting": 1, "waits": 0, "timeouts": 0})
    # Which waiter's thread tells the line is empty (and what the others counted by then) is scheduling.
    assert (recovered[0], recovered[1]["waiting"], recovered[1]["timeouts"]) == ("recovered", 0, 0)
    assert disposed == ("disposed", {"checkouts": 55, "connections_created": 2})


def test_a_pool_evicted_at_db_connect_max_pools_notifies_disposed(pg_pools, notified, clean_env):
    clean_env.setenv("DB_CONNECT_MAX_POOLS", "1")
    for name in ("first", "second"):
        conn = connect(pg_pools.dsn, application_name=name)
        conn.close()
    first, second = (e.pool for e in notified if e.event == "created")
    assert "application_name=first" in first
    assert [e.event for e in notified if e.pool == first] == ["created", "disposed"]
    assert [e.event for e in notified if e.pool == second] == ["created"]


def test_a_failing_listener_is_logged_and_never_breaks_the_pool(pg_pools, notified, caplog):
    def broken(event):
        raise RuntimeError("listener bug")

    remove = stats.add_listener(broken)
    try:
        with db_utils.get_pooled_connection() as conn:
            conn.cursor().execute("SELECT 1")
    finally:
        remove()
    assert [e.event for e in notified] == ["created"]  # the others still heard it
    assert any("pool listener" in r.getMessage() and r.exc_info for r in caplog.records)
