"""FIFO hand-off in the PostgreSQL pool: waiters are served in arrival order, nobody barges, nothing leaks.

Ordering is made deterministic by starting each waiter only once the previous one stands in the pool's
line (``pool.waiting()``), never by sleeping. Every test ends by checking that every connection is back:
a hand-off that loses a connection shows up as ``checked_out`` above zero.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event

import db_utils
from db_utils import PoolTimeoutError
from db_utils.postgres.fair_queue import FairQueuePool
from db_utils.postgres.registry import pool_for
from tests.pg_helpers import present

pytestmark = pytest.mark.postgres

JOIN_TIMEOUT = 30.0


@pytest.fixture(autouse=True)
def pg(pg_pools):
    return pg_pools


def figures() -> dict[str, Any]:
    only: dict[str, Any]
    (only,) = db_utils.pool_status()["postgres"].values()
    return only


def the_pool() -> FairQueuePool:
    engine, _state = pool_for(None)
    assert isinstance(engine.pool, FairQueuePool)
    return engine.pool


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition another thread will make true (bounded: a hang fails the test, never the suite)."""
    deadline = time.monotonic() + JOIN_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        threading.Event().wait(0.002)


def start(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def join_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive(), "a borrower thread hung"


def assert_all_returned(idle_at_most: int) -> None:
    stats = figures()
    assert stats["checked_out"] == 0
    assert stats["overflow"] == 0
    assert 1 <= stats["idle"] <= idle_at_most
    assert the_pool().waiting() == 0


def select_one(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        return int(cur.fetchone()[0])


def test_waiters_are_served_in_arrival_order():
    db_utils.get_connection_pool(pool_size=1, max_overflow=0, timeout=JOIN_TIMEOUT)
    pool = the_pool()
    holder = db_utils.get_postgres_connection()
    assert holder is not None
    served: list[int] = []

    def borrower(number: int) -> Callable[[], None]:
        def run() -> None:
            with db_utils.get_pooled_connection() as conn:
                select_one(conn)
                served.append(number)  # appended while holding the only connection: no race

        return run

    threads = []
    for number in range(6):
        threads.append(start(borrower(number)))
        wait_until(lambda: pool.waiting() == number + 1, f"borrower {number} is in line")
    holder.close()
    join_all(threads)
    assert served == [0, 1, 2, 3, 4, 5]
    stats = figures()
    assert stats["waits"] == 6
    assert stats["timeouts"] == 0
    assert stats["connections_created"] == 1
    assert_all_returned(idle_at_most=1)


def test_returning_thread_cannot_take_the_connection_back_ahead_of_a_waiter():
    db_utils.get_connection_pool(pool_size=1, max_overflow=0, timeout=JOIN_TIMEOUT)
    pool = the_pool()
    holder = db_utils.get_postgres_connection()
    assert holder is not None
    order: list[str] = []

    def waiter() -> None:
        with db_utils.get_pooled_connection() as conn:
            order.append("waiter")
            # Keep the connection until the returning thread has queued behind us, then give it up.
            wait_until(lambda: pool.waiting() == 1, "the returning thread is in line")
            select_one(conn)

    thread = start(waiter)
    wait_until(lambda: pool.waiting() == 1, "the waiter is in line")
    holder.close()  # handed to the waiter, not put where the next line could grab it
    again = db_utils.get_postgres_connection()  # must queue behind the waiter
    assert again is not None
    order.append("returning thread")
    select_one(again)
    again.close()
    join_all([thread])
    assert order == ["waiter", "returning thread"]
    assert_all_returned(idle_at_most=1)


def test_newcomer_queues_behind_waiters_even_when_a_connection_is_being_returned():
    """With two waiters, the connection returned by the first goes to the second, not to a newcomer."""
    db_utils.get_connection_pool(pool_size=1, max_overflow=0, timeout=JOIN_TIMEOUT)
    pool = the_pool()
    holder = db_utils.get_postgres_connection()
    assert holder is not None
    served: list[str] = []
    first_is_serving = threading.Event()
    newcomer_may_come = threading.Event()

    def first() -> None:
        with db_utils.get_pooled_connection():
            served.append("first")
            first_is_serving.set()
            wait_until(lambda: pool.waiting() == 2, "second and newcomer are in line")

    def second() -> None:
        with db_utils.get_pooled_connection():
            served.append("second")

    def newcomer() -> None:
        newcomer_may_come.wait(JOIN_TIMEOUT)
        with db_utils.get_pooled_connection():
            served.append("newcomer")

    threads = [start(first)]
    wait_until(lambda: pool.waiting() == 1, "first is in line")
    threads.append(start(second))
    wait_until(lambda: pool.waiting() == 2, "second is in line")
    threads.append(start(newcomer))
    holder.close()
    assert first_is_serving.wait(JOIN_TIMEOUT)
    newcomer_may_come.set()  # arrives while 'second' still waits: it must not overtake
    join_all(threads)
    assert served == ["first", "second", "newcomer"]
    assert_all_returned(idle_at_most=1)


def test_timeout_raises_pool_timeout_error_and_leaks_nothing():
    db_utils.get_connection_pool(pool_size=1, max_overflow=0, timeout=0.2)
    pool = the_pool()
    holder = db_utils.get_postgres_connection()
    assert holder is not None
    started = time.monotonic()
    with pytest.raises(PoolTimeoutError) as raised:
        with db_utils.get_pooled_connection():
            pass
    waited = time.monotonic() - started
    assert waited >= 0.2  # a lower bound only: the wait lasted at least the configured timeout
    message = str(raised.value)
    assert "pool size 1, max overflow 0, timeout 0.2 s" in message
    assert pool.waiting() == 0  # the timed-out checkout left the line
    holder.close()
    stats = figures()
    assert (stats["waits"], stats["timeouts"]) == (1, 1)
    assert stats["wait_time_total"] >= 0.2
    # The connection returned after the timeout went to the idle queue (nobody was waiting), and serves.
    assert stats["idle"] == 1
    with db_utils.get_pooled_connection() as conn:
        assert select_one(conn) == 1
    assert_all_returned(idle_at_most=1)


def test_waiter_whose_deadline_passed_while_being_handed_a_connection_keeps_it():
    """The timeout-vs-hand-off race, forced: the hand-off wins the lock after the waiter's deadline."""
    db_utils.get_connection_pool(pool_size=1, max_overflow=0, timeout=0.2)
    pool = the_pool()
    record = pool._do_get()  # the only connection, taken at the raw pool level to hand it over by hand
    outcome: list[object] = []

    def waiter() -> None:
        try:
            with db_utils.get_pooled_connection() as conn:
                outcome.append(select_one(conn))
        except PoolTimeoutError as error:
            outcome.append(error)

    thread = start(waiter)
    wait_until(lambda: pool.waiting() == 1, "the waiter is in line")
    with pool._handoff_lock:
        # The waiter's timed wait ends while we hold the lock, so it cannot decide "timed out" yet.
        threading.Event().wait(0.3)
        assert pool._hand_to_oldest(record)
    join_all([thread])
    assert outcome == [1]
    stats = figures()
    assert (stats["waits"], stats["timeouts"]) == (1, 0)
    assert_all_returned(idle_at_most=1)


def test_timeouts_racing_returns_never_lose_a_connection():
    """Many short timeouts expiring around returns: each checkout succeeds or times out, none leaks."""
    db_utils.get_connection_pool(pool_size=2, max_overflow=0, timeout=0.005)
    pool = the_pool()
    outcomes = {"ok": 0, "timeout": 0}
    lock = threading.Lock()  # guards outcomes, written by every borrower
    barrier = threading.Barrier(12)

    def borrower() -> None:
        barrier.wait()
        for _ in range(15):
            try:
                with db_utils.get_pooled_connection() as conn, conn.cursor() as cur:
                    cur.execute("SELECT pg_sleep(0.002)")
                result = "ok"
            except PoolTimeoutError:
                result = "timeout"
            with lock:
                outcomes[result] += 1

    join_all([start(borrower) for _ in range(12)])
    stats = figures()
    assert outcomes["ok"] + outcomes["timeout"] == 12 * 15
    assert stats["timeouts"] == outcomes["timeout"]
    assert stats["checkouts"] == stats["checkins"] == outcomes["ok"]
    assert stats["connections_created"] <= 2
    assert pool.checkedin() == 2 - pool.checkedout()
    assert_all_returned(idle_at_most=2)


def test_overflow_connection_returned_while_threads_wait_is_handed_over_not_closed(pg):
    db_utils.get_connection_pool(pool_size=1, max_overflow=1, timeout=JOIN_TIMEOUT)
    pool = the_pool()
    core, extra = present(db_utils.get_postgres_connection()), present(db_utils.get_postgres_connection())
    assert figures()["overflow"] == 1
    got_it = threading.Event()
    release = threading.Event()

    def waiter() -> None:
        with db_utils.get_pooled_connection():
            got_it.set()
            release.wait(JOIN_TIMEOUT)

    thread = start(waiter)
    wait_until(lambda: pool.waiting() == 1, "the waiter is in line")
    extra.close()
    assert got_it.wait(JOIN_TIMEOUT)
    assert figures()["connections_created"] == 2  # handed over, not closed and reopened
    release.set()
    join_all([thread])
    core.close()
    # Nobody waits now: the connection beyond pool_size was closed on return, as QueuePool does.
    assert_all_returned(idle_at_most=1)
    wait_until(lambda: pg.backend_count() == 1, "the overflow backend has exited")


def test_capacity_freed_by_a_failed_open_goes_to_the_oldest_waiter():
    """An overflow open that fails frees its slot; the waiter in line gets it and opens its own."""
    engine = db_utils.get_connection_pool(pool_size=1, max_overflow=1, timeout=JOIN_TIMEOUT)
    pool = the_pool()
    holder = db_utils.get_postgres_connection()
    assert holder is not None
    opening = threading.Event()
    fail_now = threading.Event()
    fail_once = [True]

    @event.listens_for(engine.pool, "connect")
    def refuse_first_open(dbapi_connection, record) -> None:
        # Runs in the opening thread; SQLAlchemy closes the new connection when a connect listener raises.
        if fail_once[0]:
            fail_once[0] = False
            opening.set()
            fail_now.wait(JOIN_TIMEOUT)
            raise RuntimeError("refused for the test")

    errors: list[BaseException] = []
    served = threading.Event()

    def opener() -> None:
        try:
            with db_utils.get_pooled_connection():
                pass
        except RuntimeError as error:
            errors.append(error)

    def waiter() -> None:
        with db_utils.get_pooled_connection() as conn:
            select_one(conn)
            served.set()

    threads = [start(opener)]
    assert opening.wait(JOIN_TIMEOUT)  # the opener holds the last slot and is opening
    threads.append(start(waiter))
    wait_until(lambda: pool.waiting() == 1, "the waiter is in line")
    fail_now.set()
    assert served.wait(JOIN_TIMEOUT)  # served while the holder still holds the other connection
    join_all(threads)
    assert [str(e) for e in errors] == ["refused for the test"]
    holder.close()
    assert figures()["timeouts"] == 0
    assert_all_returned(idle_at_most=1)


def test_storm_of_fifty_threads_returns_everything_and_counts_right():
    db_utils.get_connection_pool(pool_size=2, max_overflow=2, timeout=JOIN_TIMEOUT)
    pool = the_pool()
    baseline = pool.checkedout()
    barrier = threading.Barrier(50)

    def borrower() -> None:
        barrier.wait()
        for _ in range(4):
            with db_utils.get_pooled_connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(0.001)")

    join_all([start(borrower) for _ in range(50)])
    assert pool.checkedout() == baseline == 0
    stats = figures()
    assert stats["checkouts"] == stats["checkins"] == 200
    assert stats["connections_created"] <= 4
    assert stats["timeouts"] == 0
    assert 1 <= stats["waits"] <= 200  # 50 threads over 4 connections: some waited, none counted twice
    assert stats["wait_time_total"] > 0
    assert_all_returned(idle_at_most=2)
