"""PostgreSQL under faults, each scenario against a real server on 127.0.0.1 with a fixed budget.

Every scenario records a row of the ``faults`` session's table (see ``conftest.py``) and asserts what the
issue asks of it. Waits are on conditions other threads make true, bounded so that a hang fails the test.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest

import db_utils
from db_utils.postgres.api import borrow
from tests.pg_helpers import checked_out, present
from testservers.tcp_proxy import FreezableProxy

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WAIT_LIMIT = 60.0  # a condition not met within this fails the test (never reached when things work)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        threading.Event().wait(0.005)


class Load:
    """Threads calling ``execute_with_pool_connection`` with idempotent writes of client-generated ids."""

    def __init__(self, url: str, table: str, threads: int, make_id: Callable[[], Any]) -> None:
        self.url, self.table, self.make_id = url, table, make_id
        self.acknowledged: list[Any] = []
        self.errors: list[dict[str, Any]] = []
        self.calls = 0
        self.max_latency = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _write(self, conn: Any, row_id: Any) -> None:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {self.table} VALUES (%s) ON CONFLICT DO NOTHING", (row_id,))

    def _run(self) -> None:
        while not self._stop.is_set():
            row_id = self.make_id()
            started = time.monotonic()
            outcome = db_utils.execute_with_pool_connection(
                lambda conn: self._write(conn, row_id), self.url, idempotent=True
            )
            latency = time.monotonic() - started
            with self._lock:
                self.calls += 1
                self.max_latency = max(self.max_latency, latency)
                if outcome["status"] == "success":
                    self.acknowledged.append(row_id)
                else:
                    self.errors.append(outcome)

    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(WAIT_LIMIT)
            assert not thread.is_alive(), "a load thread hung"


def missing_writes(server: Any, table: str, acknowledged: list[Any]) -> int:
    stored = {str(row[0]) for row in server.query(f"SELECT id FROM {table}")}
    return len({str(row_id) for row_id in acknowledged} - stored)


def figures_of(url_part: str) -> dict[str, Any]:
    figures: dict[str, Any]
    (figures,) = (f for url, f in db_utils.pool_status()["postgres"].items() if url_part in url)
    return figures


def test_restart_under_40_thread_write_load(postgres_factory, clean_env, fault_report):
    server = postgres_factory(max_connections=60)
    server.query("CREATE TABLE writes (id uuid PRIMARY KEY)")
    db_utils.dispose_pools()
    db_utils.get_connection_pool(server.url, pool_size=10, max_overflow=20)
    load = Load(server.url, "writes", 40, lambda: str(uuid.uuid4()))
    try:
        wait_until(lambda: load.count() >= 200, "the load is running")
        restart_started = time.monotonic()
        server.restart()
        restart_seconds = time.monotonic() - restart_started
        after = load.count()
        wait_until(lambda: load.count() >= after + 400, "writes succeed after the restart")
    finally:
        load.stop()
    missing = missing_writes(server, "writes", load.acknowledged)
    leaked = figures_of(f":{server.port}/")["checked_out"]
    deadline = db_utils.get_connection_pool(server.url).pool.poolshift_state.settings.retry_deadline  # type: ignore[attr-defined]
    fault_report(
        f"restart ({restart_seconds:.2f} s) under 40-thread writes",
        calls=load.calls,
        successes=len(load.acknowledged),
        errors=len(load.errors),
        missing=missing,
        max_latency=load.max_latency,
        bound=round(deadline + 2 * restart_seconds, 1),
        leaked=leaked,
    )
    assert load.errors == []
    assert missing == 0
    assert leaked == 0
    assert server.backend_count() <= 30  # never more server connections than the pool bound
    db_utils.dispose_pools()


def test_terminate_every_pooled_backend_every_100_ms_for_10_s(postgres, clean_env, fault_report):
    table = f"storm_{uuid.uuid4().hex[:8]}"
    postgres.query(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    url = postgres.url + "?application_name=faults_storm"
    db_utils.dispose_pools()
    db_utils.get_connection_pool(url, pool_size=8, max_overflow=0)
    ids = itertools.count()
    load = Load(url, table, 8, lambda: next(ids))
    kills = 0
    try:
        wait_until(lambda: load.count() >= 50, "the load is running")
        end = time.monotonic() + 10
        while time.monotonic() < end:
            rows = postgres.query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'faults_storm'"
            )
            kills += len(rows)
            threading.Event().wait(0.1)
    finally:
        load.stop()
    missing = missing_writes(postgres, table, load.acknowledged)
    fault_report(
        f"pg_terminate_backend storm ({kills} kills in 10 s)",
        calls=load.calls,
        successes=len(load.acknowledged),
        errors=len(load.errors),
        missing=missing,
        max_latency=load.max_latency,
        bound=db_utils.get_connection_pool(url).pool.poolshift_state.settings.retry_deadline,  # type: ignore[attr-defined]
        leaked=figures_of("faults_storm")["checked_out"],
    )
    assert kills > 0
    assert load.errors == []
    assert missing == 0
    postgres.query(f"DROP TABLE {table}")
    db_utils.dispose_pools()


def test_a_hung_server_fails_every_call_within_its_bound(postgres, clean_env, fault_report):
    ping_timeout, connect_timeout, retry_deadline = 0.5, 1, 1.0
    with FreezableProxy(postgres.port) as proxy:
        # The guide's parameters ("Faults: what bounds what"): none of them bounds a hung peer; the
        # checkout ping's and health_check()'s own bound (ping_timeout) and connect_timeout do.
        url = postgres.url.replace(f":{postgres.port}/", f":{proxy.port}/") + (
            f"?connect_timeout={connect_timeout}&keepalives_idle=5&keepalives_interval=2&keepalives_count=3"
            "&tcp_user_timeout=10000&options=-c%20statement_timeout%3D200"
        )
        db_utils.dispose_pools()
        db_utils.get_connection_pool(
            url,
            pool_size=2,
            max_overflow=0,
            ping_timeout=ping_timeout,
            ping_after=0,
            retry_deadline=retry_deadline,
        )
        assert db_utils.health_check(url)["healthy"]
        proxy.freeze()
        # Checkout ping (bounded), one reconnect (connect_timeout), then the query's own bound.
        health_bound = ping_timeout + connect_timeout + ping_timeout
        # Each attempt: at most a ping and a connect; attempts start within the retry deadline.
        call_bound = retry_deadline + ping_timeout + connect_timeout + 2.0  # + the last backoff
        latencies: list[tuple[float, float]] = []
        outcomes = []
        for _ in range(3):
            started = time.monotonic()
            outcomes.append(db_utils.health_check(url)["healthy"])
            latencies.append((time.monotonic() - started, health_bound))
            started = time.monotonic()
            result = db_utils.execute_with_pool_connection(
                lambda conn: conn.cursor().execute("SELECT 1"), url
            )
            outcomes.append(result["status"] == "success")
            latencies.append((time.monotonic() - started, call_bound))
        proxy.thaw()
        recovered = db_utils.health_check(url)["healthy"]
        leaked = figures_of(f":{proxy.port}/")["checked_out"]
    slack = 1.0  # a loaded machine schedules the watchdog and libpq's timer late
    fault_report(
        "hung server (TCP proxy stops forwarding)",
        calls=len(outcomes),
        successes=sum(outcomes),
        errors=len(outcomes) - sum(outcomes),
        missing=0,
        max_latency=max(latency for latency, _ in latencies),
        bound=max(bound for _, bound in latencies),
        leaked=leaked,
    )
    assert not any(outcomes)  # nothing answers, and every call says so
    assert all(latency <= bound + slack for latency, bound in latencies), latencies
    assert recovered
    assert leaked == 0
    db_utils.dispose_pools()


def hold_two(url: str) -> list[Any]:
    return [borrow(url) for _ in range(2)]


def test_exhaustion_fails_in_the_pool_timeout_naming_the_holders(pg_pools, fault_report):
    url = pg_pools.url
    db_utils.get_connection_pool(url, pool_size=2, max_overflow=0, timeout=0.3)
    held = hold_two(url)
    started = time.monotonic()
    with pytest.raises(db_utils.PoolTimeoutError) as timeout:
        borrow(url)
    latency = time.monotonic() - started
    for conn in held:
        conn.close()
    fault_report(
        "exhaustion (2 held, third borrower)",
        calls=1,
        successes=0,
        errors=1,
        missing=0,
        max_latency=latency,
        bound=0.3,
        leaked=checked_out(),
    )
    assert f"held by {__file__}:" in str(timeout.value)
    assert "(2)" in str(timeout.value)
    assert latency < 0.3 + 2.0
    assert checked_out() == 0


def test_fork_under_load(pg_pools, scratch_table, fault_report):
    ids = itertools.count()
    load = Load(pg_pools.url, scratch_table, 4, lambda: next(ids))
    children = []
    try:
        wait_until(lambda: load.count() >= 50, "the load is running")
        for _ in range(3):
            pid = os.fork()
            if pid == 0:  # the child: its own pool, never the parent's sockets
                code = 1
                try:
                    outcomes = [
                        db_utils.execute_with_pool_connection(lambda c: c.cursor().execute("SELECT 1"))
                        for _ in range(20)
                    ]
                    code = 0 if all(o["status"] == "success" for o in outcomes) else 1
                finally:
                    os._exit(code)
            children.append(pid)
        exit_codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
        after = load.count()
        wait_until(lambda: load.count() >= after + 50, "the parent's load goes on after the forks")
    finally:
        load.stop()
    fault_report(
        "fork under 4-thread load (3 children)",
        calls=load.calls + 60,
        successes=len(load.acknowledged) + 20 * exit_codes.count(0),
        errors=len(load.errors) + 20 * (3 - exit_codes.count(0)),
        missing=missing_writes(pg_pools, scratch_table, load.acknowledged),
        max_latency=load.max_latency,
        bound=db_utils.get_connection_pool().pool.poolshift_state.settings.retry_deadline,  # type: ignore[attr-defined]
        leaked=checked_out(),
    )
    assert exit_codes == [0, 0, 0]
    assert load.errors == []
    assert checked_out() == 0


def open_cursor() -> Any:
    return present(db_utils.get_postgres_connection()).cursor()  # the handle itself is dropped at once


def test_dropped_handles_never_give_a_cursors_connection_away(pg_pools, scratch_table, fault_report):
    db_utils.get_connection_pool(pool_size=1, max_overflow=0, timeout=0.2)
    cursor = open_cursor()
    cursor.execute(f"INSERT INTO {scratch_table} VALUES (1)")
    gc.collect()
    # The cursor keeps its lease: the pool's only connection is not handed to anyone else.
    with pytest.raises(db_utils.PoolTimeoutError), db_utils.get_pooled_connection():
        pass
    cursor.execute(f"SELECT count(*) FROM {scratch_table}")
    assert cursor.fetchone() == (1,)
    del cursor  # now the lease ends: returned, its uncommitted insert rolled back
    with db_utils.get_pooled_connection() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {scratch_table}")
        seen = cur.fetchone()[0]
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    stale = conn.cursor()
    named = conn.cursor(name="server_side")
    named.execute("SELECT generate_series(1, 10)")
    conn.close()
    errors = 0
    for use in (lambda: stale.execute("SELECT 1"), named.fetchone):
        with pytest.raises(psycopg2.InterfaceError):
            use()
        errors += 1
    fault_report(
        "dropped handles (cursor outlives its handle)",
        calls=4,
        successes=2,
        errors=errors,
        missing=0,
        max_latency=0.0,
        bound=0.2,
        leaked=checked_out(),
    )
    assert seen == 0  # the next borrower never saw the dropped cursor's transaction
    assert checked_out() == 0


def leak_in_a_cycle() -> None:
    conn = db_utils.get_postgres_connection()
    holder: dict[str, Any] = {"conn": conn}
    holder["self"] = holder  # only the cyclic collector can free this


def test_leaks_are_reported_once_and_named_by_the_exhaustion_error(pg_pools, clean_env, caplog, fault_report):
    clean_env.setenv("DB_POOL_LEAK_THRESHOLD", "0.2")
    db_utils.dispose_pools()
    db_utils.get_connection_pool(pool_size=2, max_overflow=0, timeout=0.2)
    caplog.set_level(logging.WARNING, logger="db_utils.pool")
    gc.disable()
    try:
        leak_in_a_cycle()
        leak_in_a_cycle()

        def leak_warnings() -> list[str]:
            return [r.getMessage() for r in caplog.records if "possible connection leak" in r.getMessage()]

        wait_until(lambda: len(leak_warnings()) == 2, "both leaks are reported")
        with pytest.raises(db_utils.PoolTimeoutError) as timeout, db_utils.get_pooled_connection():
            pass
        reported_once = len(leak_warnings()) == 2
    finally:
        gc.enable()
    gc.collect()  # the cycles die: their connections come back (with a ResourceWarning each)
    fault_report(
        "leak detection (2 leaks in GC-disabled cycles)",
        calls=3,
        successes=0,
        errors=1,
        missing=0,
        max_latency=0.0,
        bound=0.2,
        leaked=checked_out(),
    )
    line = leak_in_a_cycle.__code__.co_firstlineno + 1
    assert all(f"{__file__}:{line}" in message for message in leak_warnings())
    assert f"held by {__file__}:{line} (2)" in str(timeout.value)
    assert reported_once
    assert checked_out() == 0
