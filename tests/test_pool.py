"""The pool itself against a real PostgreSQL: dialect-built engine, validation, counters, gauges."""

from __future__ import annotations

import threading

import psycopg2
import psycopg2.extensions
import pytest
from sqlalchemy.pool import QueuePool

import db_utils
from db_utils.postgres.registry import pool_for
from tests.pg_helpers import backend_pid, fair_pool, present, terminate_and_wait

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def pg(pg_pools):
    return pg_pools


def figures():
    (only,) = db_utils.pool_status()["postgres"].values()
    return only


def test_pool_is_a_dialect_built_queue_pool():
    engine = db_utils.get_connection_pool()
    assert isinstance(engine.pool, QueuePool)
    assert engine.pool._dialect is engine.dialect  # pre-ping and is_disconnect need the dialect
    assert engine.dialect.driver == "psycopg2"


def test_connections_are_reused(pg):
    opened_before = pg.connections_opened()
    pids = set()
    for _ in range(5):
        with db_utils.get_pooled_connection() as conn:
            pids.add(backend_pid(conn))
    assert len(pids) == 1
    # connections_opened() itself opens one session per call: one more than the pool's single session.
    assert pg.connections_opened() - opened_before == 2
    stats = figures()
    assert (stats["checkouts"], stats["reuses"], stats["connections_created"]) == (5, 4, 1)
    assert stats["reuse_rate"] == 0.8


@pytest.mark.parametrize("ping_after", ["0", "3600"])
def test_a_connection_killed_while_idle_is_replaced_without_a_round_trip(pg, clean_env, ping_after):
    # Inside the ping window too (3600): the closed socket is seen by a non-blocking poll at checkout.
    clean_env.setenv("DB_POOL_PING_AFTER", ping_after)
    with db_utils.get_pooled_connection() as conn:
        first_pid = backend_pid(conn)
    assert terminate_and_wait(pg) == 1
    with db_utils.get_pooled_connection() as conn:  # second checkout of the killed connection
        assert backend_pid(conn) != first_pid
    stats = figures()
    assert stats["pings"] == 0
    assert stats["invalidated"] == 1
    assert (stats["checkouts"], stats["checkins"], stats["recycled"]) == (2, 2, 0)


def test_a_pinged_connection_is_handed_out_outside_a_transaction(clean_env):
    # The ping's own transaction is ended: the borrower can still switch to autocommit.
    clean_env.setenv("DB_POOL_PING_AFTER", "0")
    with db_utils.get_pooled_connection() as conn:
        backend_pid(conn)
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    try:
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        conn.autocommit = True
    finally:
        conn.close()
    assert figures()["pings"] == 1


def test_recently_used_connection_skips_the_ping(clean_env):
    clean_env.setenv("DB_POOL_PING_AFTER", "3600")
    for _ in range(3):
        with db_utils.get_pooled_connection() as conn:
            backend_pid(conn)
    assert figures()["pings"] == 0


def test_pre_ping_can_be_switched_off(pg, clean_env):
    clean_env.setenv("DB_POOL_PRE_PING", "false")
    clean_env.setenv("DB_POOL_PING_AFTER", "0")
    with db_utils.get_pooled_connection() as conn:
        backend_pid(conn)
    with db_utils.get_pooled_connection() as conn:
        backend_pid(conn)
    assert figures()["pings"] == 0


def test_gauges_checked_out_overflow_and_utilization():
    db_utils.get_connection_pool(pool_size=1, max_overflow=3)
    held = [present(db_utils.get_postgres_connection()) for _ in range(3)]
    stats = figures()
    assert stats["checked_out"] == 3
    assert stats["overflow"] == 2
    assert stats["utilization"] == 0.75
    for conn in held:
        conn.close()
    stats = figures()
    assert (stats["checked_out"], stats["overflow"], stats["idle"]) == (0, 0, 1)


def test_overflow_is_never_negative_on_an_unused_pool():
    db_utils.get_connection_pool(pool_size=4)
    assert figures()["overflow"] == 0


def test_waiting_checkout_is_counted():
    db_utils.get_connection_pool(pool_size=1, max_overflow=0, timeout=30)
    holder = db_utils.get_postgres_connection()
    assert holder is not None
    waiting = threading.Event()
    done = threading.Event()

    def borrower():
        waiting.set()
        with db_utils.get_pooled_connection():
            done.set()

    thread = threading.Thread(target=borrower)
    thread.start()
    waiting.wait()
    engine, _state = pool_for(None)
    # Release only once the borrower is inside the pool's wait (it stands in the pool's line of waiters).
    while not fair_pool(engine).waiting():
        if done.is_set():
            break
        threading.Event().wait(0.005)
    holder.close()
    thread.join()
    assert done.is_set()
    assert figures()["waits"] == 1


def test_recycle_is_counted(clean_env):
    clean_env.setenv("DB_POOL_RECYCLE", "60")
    with db_utils.get_pooled_connection() as conn:
        first = backend_pid(conn)
    # Age the idle connection past the recycle limit instead of sleeping.
    engine, _state = pool_for(None)
    assert fair_pool(engine)._recycle == 60
    fair_pool(engine)._pool.queue[0].starttime -= 61  # type: ignore[attr-defined]  # SQLAlchemy's private deque
    with db_utils.get_pooled_connection() as conn:
        assert backend_pid(conn) != first
    assert figures()["recycled"] == 1


def test_uuid_results_are_text_as_with_plain_psycopg2():
    with db_utils.get_pooled_connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT '0b1c6c52-8a2d-4c4b-9a39-5d3a8e2a2f10'::uuid, ARRAY[gen_random_uuid()]")
        single, array = cur.fetchone()
    assert single == "0b1c6c52-8a2d-4c4b-9a39-5d3a8e2a2f10"
    assert isinstance(array, str)


def test_dispose_pools_closes_idle_connections(pg):
    with db_utils.get_pooled_connection() as conn:
        backend_pid(conn)
    assert pg.backend_count() == 1
    assert db_utils.dispose_pools() == 1
    assert pg.backend_count() == 0


def test_failed_reconnects_never_count_a_checkin_without_its_checkout(pg):
    from db_utils.postgres.api import borrow
    from testservers.tcp_proxy import FreezableProxy

    proxy = FreezableProxy(pg.port)
    url = pg.url.replace(f":{pg.port}/", f":{proxy.port}/")
    db_utils.get_connection_pool(url, pool_size=2, max_overflow=0)
    held = [borrow(url), borrow(url)]
    for conn in held:
        conn.close()
    proxy.close()  # the idle connections see EOF; new connects are refused
    for _ in range(3):
        with pytest.raises(psycopg2.OperationalError):
            borrow(url)
    stats = figures()
    assert stats["checkins"] == stats["checkouts"] == 2
    assert stats["checked_out"] == 0
    assert stats["connect_failures"] == 3
    assert stats["invalidated"] >= 1


def test_connections_replaced_after_a_disconnect_count_as_invalidated_not_recycled(pg):
    from db_utils.postgres.api import borrow

    held = [borrow(None) for _ in range(3)]
    for conn in held:
        conn.close()

    def killed_mid_operation(conn):
        if not calls:
            calls.append(1)
            pg.query("SELECT pg_terminate_backend(%s, 10000)", (conn.get_backend_pid(),))
        conn.cursor().execute("SELECT 1")

    calls: list[int] = []
    # Retries on a fresh connection: every connection older than the disconnect is replaced.
    assert db_utils.execute_with_pool_connection(killed_mid_operation, idempotent=True)["status"] == "success"
    held = [borrow(None) for _ in range(3)]
    for conn in held:
        backend_pid(conn)
        conn.close()
    stats = figures()
    assert stats["recycled"] == 0
    assert stats["invalidated"] == 3


def test_a_ping_timeout_replaces_every_older_connection_without_pinging_them(pg):
    from db_utils.postgres.api import borrow
    from testservers.tcp_proxy import FreezableProxy

    with FreezableProxy(pg.port) as proxy:
        url = pg.url.replace(f":{pg.port}/", f":{proxy.port}/") + "?connect_timeout=2"
        db_utils.get_connection_pool(url, pool_size=2, max_overflow=0, ping_after=0, ping_timeout=0.25)
        held = [borrow(url), borrow(url)]
        for conn in held:
            backend_pid(conn)
            conn.close()
        proxy.freeze()
        with pytest.raises(psycopg2.OperationalError):  # ping timed out, then the reconnect timed out
            borrow(url)
        before = figures()
        proxy.thaw()
        # Both records: the one whose ping failed reconnects; the other is replaced without a ping.
        held = [borrow(url), borrow(url)]
        for conn in held:
            backend_pid(conn)
            conn.close()
        after = figures()
    assert (before["pings"], before["ping_failures"]) == (1, 1)
    assert after["pings"] == before["pings"]
    assert after["invalidated"] == before["invalidated"] + 1
    assert after["recycled"] == 0
