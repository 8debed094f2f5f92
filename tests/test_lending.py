"""The everyday checkout and return of ``db_utils.postgres.lending``: what its shortcuts must keep.

``execute_with_pool`` ends its lease in its own ``finally`` (no weak reference on the handle); legacy
code's ``close()`` with its transaction still open is rolled back before the pristine test.
"""

from __future__ import annotations

import sys
from typing import Any

import psycopg2
import pytest

import db_utils
from db_utils.postgres import leases
from tests.pg_helpers import backend_pid, checked_out, present

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def pg(pg_pools):
    return pg_pools


def figures() -> dict[str, Any]:
    (only,) = db_utils.pool_status()["postgres"].values()
    return dict(only)


def test_execute_with_pool_lists_its_lease_while_the_operation_runs():
    pool = db_utils.get_connection_pool().pool
    seen: list[str] = []

    def operation(conn: Any) -> None:
        seen.append(leases.holders(pool))

    line = sys._getframe().f_lineno + 1
    db_utils.execute_with_pool(operation)
    assert seen == [f"{__file__}:{line} (1)"]
    assert leases.holders(pool) == ""
    assert checked_out() == 0


def test_a_handle_kept_after_execute_with_pool_is_closed_for_good():
    kept = db_utils.execute_with_pool(lambda conn: conn)
    assert kept.closed
    with pytest.raises(psycopg2.InterfaceError):
        kept.cursor()
    # Its connection went back and serves the next borrower, which the stale handle cannot reach.
    with db_utils.get_pooled_connection() as conn:
        backend_pid(conn)
        with pytest.raises(psycopg2.InterfaceError):
            kept.commit()
    assert checked_out() == 0


def test_a_cursor_kept_after_execute_with_pool_is_closed():
    cursor = db_utils.execute_with_pool(lambda conn: conn.cursor())
    with pytest.raises(psycopg2.InterfaceError):
        cursor.execute("SELECT 1")


def test_legacy_close_with_work_uncommitted_rolls_back_and_reuses_the_connection(pg, scratch_table):
    conn = present(db_utils.get_postgres_connection())
    pid = backend_pid(conn)
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {scratch_table} VALUES (1)")
    conn.close()  # never committed
    assert pg.query(f"SELECT count(*) FROM {scratch_table}") == [(0,)]
    again = present(db_utils.get_postgres_connection())
    try:
        assert backend_pid(again) == pid
        assert again.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    finally:
        again.close()
    stats = figures()
    assert (stats["discarded_dirty"], stats["connections_created"]) == (0, 1)


def test_legacy_close_in_a_failed_transaction_rolls_back_and_reuses_the_connection(pg):
    conn = present(db_utils.get_postgres_connection())
    pid = backend_pid(conn)
    with pytest.raises(psycopg2.errors.DivisionByZero), conn.cursor() as cur:
        cur.execute("SELECT 1 / 0")
    assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR
    conn.close()
    again = present(db_utils.get_postgres_connection())
    try:
        assert backend_pid(again) == pid
    finally:
        again.close()
    assert figures()["discarded_dirty"] == 0


def test_session_state_left_in_an_open_transaction_is_still_discarded(pg):
    conn = present(db_utils.get_postgres_connection())
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = 1234")
    conn.close()  # the transaction is rolled back first; the SET outlives it, so DISCARD ALL still runs
    again = present(db_utils.get_postgres_connection())
    try:
        with again.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone() == ("0",)
    finally:
        again.close()


def test_reuses_are_checkouts_that_were_not_a_first_use(pg):
    for _ in range(3):
        db_utils.execute_with_pool(backend_pid)
    held = [present(db_utils.get_postgres_connection()) for _ in range(2)]  # one more connection opened
    for conn in held:
        conn.close()
    stats = figures()
    assert (stats["checkouts"], stats["connections_created"], stats["reuses"]) == (5, 2, 3)


def test_every_entry_point_names_its_borrowers_line():
    pool = db_utils.get_connection_pool().pool
    line = sys._getframe().f_lineno + 1
    with db_utils.get_pooled_connection():
        assert leases.holders(pool) == f"{__file__}:{line} (1)"
    line = sys._getframe().f_lineno + 1
    conn = present(db_utils.get_postgres_connection())
    try:
        assert leases.holders(pool) == f"{__file__}:{line} (1)"
    finally:
        conn.close()
    assert leases.holders(pool) == ""
