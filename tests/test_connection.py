"""get_pooled_connection and execute_with_pool against a real PostgreSQL."""

from __future__ import annotations

import psycopg2
import pytest

import db_utils
from tests.pg_helpers import checked_out

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def pg(pg_pools):
    return pg_pools


@pytest.fixture
def table(scratch_table):
    return scratch_table


def test_clean_exit_commits_and_returns(pg, table):
    with db_utils.get_pooled_connection() as conn:
        conn.cursor().execute(f"INSERT INTO {table} VALUES (1)")
    assert pg.query(f"SELECT id FROM {table}") == [(1,)]
    assert checked_out() == 0
    with pytest.raises(psycopg2.InterfaceError):
        conn.cursor()


def test_exception_rolls_back_propagates_and_returns(pg, table):
    def insert_then_fail():
        with db_utils.get_pooled_connection() as conn:
            conn.cursor().execute(f"INSERT INTO {table} VALUES (1)")
            raise KeyError("boom")

    with pytest.raises(KeyError):
        insert_then_fail()
    assert pg.query(f"SELECT count(*) FROM {table}") == [(0,)]
    assert checked_out() == 0


def test_database_error_inside_block_propagates_unmasked(table):
    def insert_twice():
        with db_utils.get_pooled_connection() as conn:
            cur = conn.cursor()
            cur.execute(f"INSERT INTO {table} VALUES (1)")
            cur.execute(f"INSERT INTO {table} VALUES (1)")

    with pytest.raises(psycopg2.errors.UniqueViolation):
        insert_twice()
    assert checked_out() == 0


def test_block_may_close_the_connection_itself(table):
    with db_utils.get_pooled_connection() as conn:
        conn.close()
    assert checked_out() == 0


def test_autocommit_is_forwarded_to_psycopg2(pg, table):
    with db_utils.get_pooled_connection() as conn:
        conn.autocommit = True
        conn.cursor().execute(f"INSERT INTO {table} VALUES (1)")
        # visible before the block ends: autocommit really reached the driver
        assert pg.query(f"SELECT count(*) FROM {table}") == [(1,)]


def test_connection_failure_raises_instead_of_yielding_none(pg, clean_env):
    clean_env.setenv("DATABASE_URL", pg.url.replace(f":{pg.port}/", ":1/"))
    with pytest.raises(psycopg2.OperationalError), db_utils.get_pooled_connection():
        pass


def test_explicit_url_argument(pg, clean_env):
    clean_env.delenv("DATABASE_URL")
    with db_utils.get_pooled_connection(pg.libpq_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_database()")
        assert cur.fetchone() == (pg.database,)


def test_execute_with_pool_returns_result_and_propagates_errors(table):
    def insert_and_count(conn):
        cur = conn.cursor()
        cur.execute(f"INSERT INTO {table} VALUES (7)")
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]

    assert db_utils.execute_with_pool(insert_and_count) == 1
    with pytest.raises(psycopg2.errors.UniqueViolation):
        db_utils.execute_with_pool(insert_and_count)
    assert checked_out() == 0


def test_health_check_reports_healthy_and_unhealthy(pg, clean_env):
    report = db_utils.health_check()
    assert report["healthy"] is True
    assert report["error"] is None
    assert pg.password not in str(report)
    bad = db_utils.health_check(pg.url.replace(f":{pg.port}/", ":1/"))
    assert bad["healthy"] is False
    assert "OperationalError" in bad["error"]
    assert pg.password not in str(bad)


def test_cursors_of_a_lease_are_closed_when_it_ends_like_psycopg2(pg):
    plain = pg.connect()
    plain_cursor = plain.cursor()
    plain.close()
    with pytest.raises(psycopg2.InterfaceError):
        plain_cursor.execute("SELECT 1")  # what psycopg2 itself does
    with db_utils.get_pooled_connection() as conn:
        cursor = conn.cursor()
    with pytest.raises(psycopg2.InterfaceError):
        cursor.execute("SELECT 1")
    assert checked_out() == 0


def test_a_long_lease_does_not_hoard_references_to_dead_cursors():
    with db_utils.get_pooled_connection() as conn:
        for _ in range(1000):
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1")
        assert len(conn._cursors) <= 65
