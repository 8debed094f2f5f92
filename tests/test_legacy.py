"""get_postgres_connection(): the legacy contract on a pooled proxy, against a real PostgreSQL."""

from __future__ import annotations

import gc
import logging
import uuid
import warnings

import psycopg2
import psycopg2.extras
import pytest

import db_utils
from tests.pg_helpers import checked_out

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def pg(pg_pools):
    return pg_pools


@pytest.fixture
def table(pg):
    name = f"legacy_{uuid.uuid4().hex[:10]}"
    pg.query(f"CREATE TABLE {name} (id int PRIMARY KEY, note text)")
    yield name
    pg.query(f"DROP TABLE {name}")


def test_close_returns_to_pool_and_is_idempotent():
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    assert checked_out() == 1
    conn.close()
    assert checked_out() == 0
    conn.close()
    assert checked_out() == 0


def test_use_after_close_raises_interface_error():
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    conn.close()
    assert conn.closed
    for use in (conn.cursor, conn.commit, conn.rollback, lambda: conn.autocommit):
        with pytest.raises(psycopg2.InterfaceError):
            use()
    with pytest.raises(psycopg2.InterfaceError):
        conn.autocommit = True
    with pytest.raises(psycopg2.InterfaceError), conn:
        pass


def test_open_proxy_reports_not_closed():
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    assert conn.closed == 0
    conn.close()


def test_with_block_commits_and_does_not_close(pg, table):
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    with conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} VALUES (1, 'a')")
    assert not conn.closed
    assert pg.query(f"SELECT note FROM {table}") == [("a",)]  # visible from another connection
    with conn.cursor() as cur:  # still usable
        cur.execute("SELECT 1")
    conn.close()


def test_with_block_rolls_back_on_exception(pg, table):
    conn = db_utils.get_postgres_connection()
    assert conn is not None

    def insert_then_fail():
        with conn:
            conn.cursor().execute(f"INSERT INTO {table} VALUES (1, 'a')")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        insert_then_fail()
    assert not conn.closed
    assert pg.query(f"SELECT count(*) FROM {table}") == [(0,)]
    conn.close()


def test_close_rolls_back_uncommitted_work_like_psycopg2(pg, table):
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    conn.cursor().execute(f"INSERT INTO {table} VALUES (1, 'a')")
    conn.close()
    assert pg.query(f"SELECT count(*) FROM {table}") == [(0,)]


def test_commit_and_rollback_behave_as_psycopg2(pg, table):
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    cur = conn.cursor()
    cur.execute(f"INSERT INTO {table} VALUES (1, 'kept')")
    conn.commit()
    cur.execute(f"INSERT INTO {table} VALUES (2, 'dropped')")
    conn.rollback()
    conn.close()
    assert pg.query(f"SELECT id FROM {table}") == [(1,)]


def test_autocommit_of_one_borrower_is_not_seen_by_the_next(pg, table):
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    conn.autocommit = True
    assert conn.autocommit is True
    conn.cursor().execute(f"INSERT INTO {table} VALUES (1, 'autocommitted')")
    assert pg.query(f"SELECT count(*) FROM {table}") == [(1,)]  # really reached psycopg2
    pid = conn.get_backend_pid()
    conn.close()
    nxt = db_utils.get_postgres_connection()
    assert nxt is not None
    assert nxt.get_backend_pid() == pid  # same connection, reset
    assert nxt.autocommit is False
    nxt.close()


def test_dict_cursors_work_through_the_proxy(table):
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("SELECT 1 AS one")
        assert cur.fetchone() == {"one": 1}
    psycopg2.extras.execute_values(conn.cursor(), f"INSERT INTO {table} VALUES %s", [(1, "x"), (2, "y")])
    conn.commit()
    conn.close()


def test_dropped_proxy_returns_to_pool_with_a_warning(caplog):
    conn = db_utils.get_postgres_connection()
    assert checked_out() == 1

    def drop():
        nonlocal conn
        del conn
        gc.collect()

    with pytest.warns(ResourceWarning, match=r"test_legacy\.py:\d+"), caplog.at_level(logging.WARNING):
        drop()
    assert checked_out() == 0
    assert "garbage-collected without close()" in caplog.text


def test_a_call_site_that_never_closes_is_logged_once_and_warns_every_time(caplog):
    """``with helper() as conn:`` commits and does not close: one handle dropped per call."""

    def never_closes():
        with db_utils.get_postgres_connection() as conn, conn.cursor() as cur:  # type: ignore[union-attr]
            cur.execute("SELECT 1")

    def elsewhere():
        db_utils.get_postgres_connection()

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, "db_utils.pool"):
        warnings.simplefilter("always")
        for _ in range(3):
            never_closes()
            gc.collect()
        elsewhere()
        gc.collect()
    assert checked_out() == 0
    dropped = [
        w for w in caught if issubclass(w.category, ResourceWarning) and "without close()" in str(w.message)
    ]
    assert len(dropped) == 4
    logged = [r.getMessage() for r in caplog.records if "without close()" in r.getMessage()]
    assert len(logged) == 2, logged  # never_closes once, elsewhere once
    assert "logged once per call site" in logged[0]


def test_configured_from_postgres_variables(pg, clean_env):
    clean_env.delenv("DATABASE_URL")
    for name, value in pg.env().items():
        clean_env.setenv(name, value)
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    with conn.cursor() as cur:
        cur.execute("SELECT current_database(), current_user")
        assert cur.fetchone() == (pg.database, pg.user)
    conn.close()


def test_configured_from_libpq_variables(pg, clean_env):
    clean_env.delenv("DATABASE_URL")
    for name, value in pg.env().items():
        clean_env.setenv(name.replace("POSTGRES_DB", "PGDATABASE").replace("POSTGRES_", "PG"), value)
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    conn.close()


def test_returns_none_and_logs_without_password_on_failure(pg, clean_env, caplog):
    clean_env.setenv("DATABASE_URL", pg.url.replace(f":{pg.port}/", ":1/"))
    with caplog.at_level(logging.ERROR):
        assert db_utils.get_postgres_connection() is None
    assert "could not get a connection" in caplog.text
    assert pg.password not in caplog.text


def test_returns_none_on_wrong_password(pg, clean_env, caplog):
    clean_env.setenv("DATABASE_URL", pg.url.replace(pg.password, "wrong-" + pg.password[::-1]))
    with caplog.at_level(logging.ERROR):
        assert db_utils.get_postgres_connection() is None
    assert "password authentication failed" in caplog.text


def test_returns_none_on_bad_configuration(clean_env, caplog):
    clean_env.delenv("DATABASE_URL")
    clean_env.setenv("POSTGRES_PORT", "not-a-port")
    with caplog.at_level(logging.ERROR):
        assert db_utils.get_postgres_connection() is None
    assert "POSTGRES_PORT" in caplog.text


def test_repr_names_the_url_without_password(pg):
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    assert "open" in repr(conn)
    assert pg.password not in repr(conn)
    conn.close()
    assert "closed" in repr(conn)
