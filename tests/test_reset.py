"""Reset on return: nothing a borrower did leaks to the next one; what cannot be reset is discarded."""

from __future__ import annotations

import io
import uuid

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import pytest

import db_utils

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def pg(pg_pools):
    # One connection only, so the "next borrower" is guaranteed to get the same one (unless discarded).
    db_utils.get_connection_pool(pool_size=1, max_overflow=0)
    return pg_pools


@pytest.fixture
def table(pg, scratch_table):
    pg.query(f"INSERT INTO {scratch_table} VALUES (1)")
    return scratch_table


def one(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def discarded() -> int:
    (only,) = db_utils.pool_status()["postgres"].values()
    return int(only["discarded_dirty"])


def next_borrower():
    return db_utils.get_postgres_connection()


def test_open_transaction_is_rolled_back_and_releases_locks(pg, table):
    conn = next_borrower()
    conn.cursor().execute(f"SELECT * FROM {table} WHERE id = 1 FOR UPDATE")
    pid = conn.get_backend_pid()
    conn.close()
    # Proven from a second connection: the row lock is gone, no lock is held by that backend.
    other = pg.connect()
    try:
        other.cursor().execute(f"SELECT * FROM {table} WHERE id = 1 FOR UPDATE NOWAIT")
    finally:
        other.close()
    locks = pg.query("SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype <> 'virtualxid'", (pid,))
    assert locks == [(0,)]
    assert pg.query("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)) == [("idle",)]


def test_failed_transaction_is_rolled_back():
    conn = next_borrower()
    with pytest.raises(psycopg2.errors.DivisionByZero):
        conn.cursor().execute("SELECT 1/0")
    conn.close()
    conn = next_borrower()
    assert one(conn, "SELECT 1") == 1
    conn.close()
    assert discarded() == 0


def test_manual_begin_in_autocommit_mode_is_rolled_back(pg, table):
    conn = next_borrower()
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("BEGIN")
    cur.execute(f"SELECT * FROM {table} WHERE id = 1 FOR UPDATE")
    conn.close()
    other = pg.connect()
    try:
        other.cursor().execute(f"SELECT * FROM {table} WHERE id = 1 FOR UPDATE NOWAIT")
    finally:
        other.close()


@pytest.mark.parametrize(
    ("dirty", "check", "clean_value"),
    [
        ("SET search_path TO pg_catalog", "SHOW search_path", '"$user", public'),
        ("SET statement_timeout = 1234", "SHOW statement_timeout", "0"),
        (
            "CREATE TEMP TABLE leftover (a int)",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'leftover'",
            0,
        ),
        ("SELECT pg_advisory_lock(4242)", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", 0),
        ("LISTEN some_channel", "SELECT count(*) FROM pg_listening_channels()", 0),
        ("PREPARE stmt AS SELECT 1", "SELECT count(*) FROM pg_prepared_statements", 0),
        ("SELECT set_config('application_name', 'leaky', false)", "SHOW application_name", ""),
    ],
)
def test_session_state_is_discarded_for_the_next_borrower(dirty, check, clean_value):
    conn = next_borrower()
    conn.autocommit = True  # also survives a rollback in autocommit mode
    conn.cursor().execute(dirty)
    pid = conn.get_backend_pid()
    conn.close()
    conn = next_borrower()
    assert conn.get_backend_pid() == pid  # reset, not replaced
    assert one(conn, check) == clean_value
    conn.close()
    assert discarded() == 0


def test_state_set_through_a_dict_cursor_is_tracked():
    conn = next_borrower()
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("SET search_path TO pg_catalog")
    conn.commit()
    conn.close()
    conn = next_borrower()
    assert one(conn, "SHOW search_path") == '"$user", public'
    conn.close()


def test_transaction_scoped_settings_need_no_discard():
    conn = next_borrower()
    conn.cursor().execute("SET LOCAL statement_timeout = 1000")
    conn.close()
    conn = next_borrower()
    assert one(conn, "SHOW statement_timeout") == "0"
    conn.close()


def test_set_session_settings_are_restored():
    conn = next_borrower()
    conn.set_session(isolation_level="SERIALIZABLE", readonly=True, deferrable=True)
    conn.cursor_factory = psycopg2.extras.DictCursor
    assert one(conn, "SHOW transaction_isolation") == "serializable"
    conn.close()
    conn = next_borrower()
    assert (conn.isolation_level, conn.readonly, conn.deferrable, conn.cursor_factory) == (
        None,
        None,
        None,
        None,
    )
    assert one(conn, "SHOW transaction_isolation") == "read committed"
    assert one(conn, "SHOW transaction_read_only") == "off"
    conn.close()
    assert discarded() == 0


def test_notices_do_not_leak():
    conn = next_borrower()
    conn.cursor().execute("DO $$ BEGIN RAISE NOTICE 'private'; END $$")
    assert conn.notices
    conn.close()
    conn = next_borrower()
    assert conn.notices == []
    conn.close()


def test_changed_client_encoding_is_discarded_not_reused():
    conn = next_borrower()
    pid = conn.get_backend_pid()
    conn.set_client_encoding("LATIN1")
    conn.close()
    conn = next_borrower()
    assert conn.get_backend_pid() != pid
    assert conn.encoding == "UTF8"
    conn.close()
    assert discarded() == 1


def test_client_encoding_set_in_sql_is_discarded():
    conn = next_borrower()
    pid = conn.get_backend_pid()
    conn.cursor().execute("SET client_encoding TO 'LATIN1'")
    conn.close()
    conn = next_borrower()
    assert conn.get_backend_pid() != pid
    conn.close()
    assert discarded() == 1


def test_typecaster_registered_on_the_connection_is_undone_and_the_connection_reused():
    conn = next_borrower()
    pid = conn.get_backend_pid()
    as_float = psycopg2.extensions.new_type(
        (23,), "INT_AS_FLOAT", lambda v, c: None if v is None else float(v)
    )
    psycopg2.extensions.register_type(as_float, conn.dbapi_connection)
    assert one(conn, "SELECT 1") == 1.0
    conn.close()
    conn = next_borrower()
    assert conn.get_backend_pid() == pid
    assert one(conn, "SELECT 1") == 1
    assert isinstance(one(conn, "SELECT 1"), int)
    conn.close()
    assert discarded() == 0


def test_helper_registering_jsonb_on_every_connect_reuses_its_connection():
    """The reuse hole: a helper that calls register_default_jsonb on each connection it hands out."""

    def get_db():
        conn = db_utils.get_postgres_connection()
        assert conn is not None
        psycopg2.extras.register_default_jsonb(conn.dbapi_connection, loads=lambda s: ("j", s))
        return conn

    pids = set()
    for _ in range(5):
        conn = get_db()
        pids.add(conn.get_backend_pid())
        assert one(conn, """SELECT '{"a": 1}'::jsonb""") == ("j", '{"a": 1}')
        conn.close()
    assert len(pids) == 1
    assert discarded() == 0
    conn = next_borrower()  # a borrower that registers nothing gets psycopg2's own jsonb parsing
    assert one(conn, """SELECT '{"a": 1}'::jsonb""") == {"a": 1}
    conn.close()


def test_show_client_encoding_keeps_the_connection():
    conn = next_borrower()
    pid = conn.get_backend_pid()
    assert one(conn, "SHOW client_encoding") == "UTF8"
    conn.close()
    conn = next_borrower()
    assert conn.get_backend_pid() == pid
    conn.close()
    assert discarded() == 0


def test_connection_killed_while_checked_out_is_not_reused(pg):
    conn = next_borrower()
    pid = conn.get_backend_pid()
    pg.terminate_backends()
    with pytest.raises(psycopg2.OperationalError):
        conn.cursor().execute("SELECT 1")
    conn.close()
    conn = next_borrower()
    assert conn.get_backend_pid() != pid
    assert one(conn, "SELECT 1") == 1
    conn.close()


@pytest.fixture
def login_function(pg):
    """A server function that changes session state itself, as an application's ``login(user_id)`` does."""
    name = f"login_{uuid.uuid4().hex[:8]}"
    pg.query(
        f"CREATE FUNCTION {name}(n int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM set_config('work_mem', n || 'MB', false); "
        "CREATE TEMP TABLE IF NOT EXISTS login_leftover (a int); RETURN n; END $$"
    )
    yield name
    pg.query(f"DROP FUNCTION {name}(int)")


def test_state_a_server_function_changes_is_discarded(login_function):
    """pgmigrations' trial: ``SELECT login(42)`` counted as clean, and the next borrower inherited its
    settings and temporary table (a user id, in a real application)."""
    conn = next_borrower()
    assert one(conn, f"SELECT {login_function}(42)") == 42
    assert one(conn, "SHOW work_mem") == "42MB"
    pid = conn.get_backend_pid()
    conn.commit()
    conn.close()
    conn = next_borrower()
    assert conn.get_backend_pid() == pid  # reset, not replaced
    assert one(conn, "SHOW work_mem") == "4MB"
    assert one(conn, "SELECT count(*) FROM pg_tables WHERE tablename = 'login_leftover'") == 0
    conn.close()


@pytest.mark.parametrize(
    "dirty",
    [
        "DO $$ BEGIN EXECUTE 'SET work_mem = ''42MB'''; END $$",
        "COPY (SELECT set_config('work_mem', '42MB', false)) TO STDOUT",
    ],
    ids=["do-block", "copy_expert"],
)
def test_state_changed_by_code_the_statement_runs_is_discarded(dirty):
    conn = next_borrower()
    with conn.cursor() as cur:
        if dirty.startswith("COPY"):
            cur.copy_expert(dirty, io.StringIO())
        else:
            cur.execute(dirty)
    assert one(conn, "SHOW work_mem") == "42MB"
    conn.commit()
    conn.close()
    conn = next_borrower()
    assert one(conn, "SHOW work_mem") == "4MB"
    conn.close()


@pytest.mark.parametrize(
    "custom",
    [
        "SET app.tenant = '7'",
        "SET LOCAL app.tenant = '7'",
        "SELECT set_config('app.tenant', '7', false)",
        "SELECT set_config('app.tenant', '7', true)",
    ],
)
def test_a_custom_variable_is_never_seen_by_the_next_borrower(custom):
    """A custom variable, once set in a session, stays defined there: ``DISCARD ALL`` (and the end of the
    transaction, for ``LOCAL``) leaves it ``''``, where a fresh session answers NULL (pgmigrations'
    trial: a row-level-security policy casting it to int failed). The connection is replaced."""
    conn = next_borrower()
    conn.cursor().execute(custom)
    pid = conn.get_backend_pid()
    conn.commit()
    conn.close()
    conn = next_borrower()
    assert one(conn, "SELECT current_setting('app.tenant', true)") is None
    assert conn.get_backend_pid() != pid
    conn.close()
    assert discarded() == 1


@pytest.fixture
def set_user_function(pg):
    """``set_user(n)``, as row-level-security applications write it: a custom variable set inside."""
    name = f"set_user_{uuid.uuid4().hex[:8]}"
    pg.query(
        f"CREATE FUNCTION {name}(n int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM set_config('app.user_id', n::text, false); RETURN n; END $$"
    )
    yield name
    pg.query(f"DROP FUNCTION {name}(int)")


def test_a_function_declared_to_close_leaves_no_custom_variable(set_user_function, monkeypatch):
    """Undeclared, ``DISCARD ALL`` runs and the variable reads ``''``; declared in
    DB_POOL_CLOSE_AFTER_FUNCTIONS, the connection is replaced and the next borrower reads NULL."""
    for declared, expected in ((False, ""), (True, None)):
        if declared:
            monkeypatch.setenv("DB_POOL_CLOSE_AFTER_FUNCTIONS", set_user_function)
        db_utils.dispose_pools()  # reads the setting again
        db_utils.get_connection_pool(pool_size=1, max_overflow=0)
        conn = next_borrower()
        assert one(conn, f"SELECT {set_user_function}(42)") == 42
        conn.commit()
        conn.close()
        conn = next_borrower()
        assert one(conn, "SELECT current_setting('app.user_id', true)") == expected
        conn.close()
    monkeypatch.delenv("DB_POOL_CLOSE_AFTER_FUNCTIONS")
    db_utils.dispose_pools()
