"""``DB_POOL_MODE=pgbouncer`` behind a real PgBouncer: session state ends with its transaction, or is refused.

The bouncer has one server connection (``default_pool_size=1``): whatever a pooled caller leaves in its
session is exactly what the next client finds (see tests/test_pgbouncer_session_state.py for the facts).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import psycopg2.extras
import pytest

import db_utils
from db_utils import ConfigError, SessionStateNotSupported
from db_utils.postgres.driver import TrackedConnection
from db_utils.postgres.pgbouncer import TransactionPooledConnection
from tests.test_pgbouncer_session_state import STATES, Bouncer, _bouncer
from testservers.pgbouncer import PgBouncerServer
from testservers.postgres import PostgresServer

# The kinds the mode undoes before the transaction ends (every kind the groundwork pinned but LISTEN,
# which is refused, and the WITH HOLD cursor, refused too).
UNDONE = [kind for kind in STATES if kind not in ("LISTEN", "WITH HOLD cursor")]


@pytest.fixture
def bouncer(
    pgbouncer_factory: Callable[..., PgBouncerServer], clean_env: pytest.MonkeyPatch
) -> Iterator[Bouncer]:
    """One server connection; ``DATABASE_URL`` and ``DB_POOL_MODE=pgbouncer`` point the shim at it."""
    for value in _bouncer(pgbouncer_factory, default_pool_size=1):
        clean_env.setenv("DATABASE_URL", value.server.libpq_url)
        clean_env.setenv("DB_POOL_MODE", "pgbouncer")
        db_utils.dispose_pools()
        yield value
        db_utils.dispose_pools()


@pytest.fixture
def work_table(bouncer: Bouncer, scratch_table: str) -> str:
    bouncer.server.postgres.query(f'GRANT INSERT, SELECT ON {scratch_table} TO "{bouncer.server.user}"')
    return scratch_table


def rows(postgres: PostgresServer, table: str) -> list[tuple[Any, ...]]:
    return postgres.query(f"SELECT id FROM {table} ORDER BY id")


def test_the_mode_gives_the_pool_transaction_pooled_connections(bouncer: Bouncer) -> None:
    with db_utils.get_pooled_connection() as conn:
        assert isinstance(conn.dbapi_connection, TransactionPooledConnection)


def test_local_mode_keeps_plain_tracked_connections(pg_pools: PostgresServer) -> None:
    with db_utils.get_pooled_connection() as conn:
        assert type(conn.dbapi_connection) is TrackedConnection


def test_an_unknown_mode_is_a_config_error_naming_the_variable(pg_pools: PostgresServer) -> None:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DB_POOL_MODE", "external-ish")
        with pytest.raises(ConfigError, match="DB_POOL_MODE='external-ish' is not one of: local, pgbouncer"):
            db_utils.get_connection_pool()
    with pytest.raises(ConfigError, match="mode='bouncer'"):
        db_utils.get_connection_pool(pg_pools.url, mode="bouncer")


@pytest.mark.parametrize("kind", UNDONE)
def test_state_lasts_until_commit_and_never_reaches_the_next_client(
    bouncer: Bouncer, work_table: str, kind: str
) -> None:
    with db_utils.get_pooled_connection() as conn:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {work_table} VALUES (1)")
            bouncer.leave(conn, kind)
            cur.execute(f"SELECT {bouncer.sql(STATES[kind].present)}")
            assert cur.fetchone() == (True,)  # the caller's own transaction sees its state
    assert bouncer.left_behind() == set()
    assert rows(bouncer.server.postgres, work_table) == [(1,)]  # the undo did not cost the work


def test_every_kind_at_once_is_undone_by_one_commit(bouncer: Bouncer) -> None:
    with db_utils.get_pooled_connection() as conn:
        for kind in UNDONE:
            bouncer.leave(conn, kind)
    assert bouncer.left_behind() == set()


def test_an_exception_rolls_back_and_releases_what_a_rollback_keeps(bouncer: Bouncer) -> None:
    def fail_after_leaving_everything() -> None:
        with db_utils.get_pooled_connection() as conn:
            for kind in UNDONE:
                bouncer.leave(conn, kind)
            raise RuntimeError("the caller fails")

    with pytest.raises(RuntimeError):
        fail_after_leaving_everything()
    assert bouncer.left_behind() == set()


def test_a_failed_statement_then_commit_leaves_nothing(bouncer: Bouncer) -> None:
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    try:
        for kind in UNDONE:
            bouncer.leave(conn, kind)
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.DivisionByZero):
            cur.execute("SELECT 1 / 0")
        conn.commit()
        assert conn.notices == []  # no "there is no transaction in progress"
    finally:
        conn.close()
    assert bouncer.left_behind() == set()


def test_the_next_transaction_of_the_same_caller_starts_clean(bouncer: Bouncer) -> None:
    """The documented limit: behind transaction pooling, session state is transaction state."""
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    try:
        with conn.cursor() as cur:
            cur.execute("SET search_path TO mine, public")
            conn.commit()
            cur.execute("SHOW search_path")
            assert cur.fetchone() == ('"$user", public',)
    finally:
        conn.close()


def test_psycopg2s_with_block_on_the_legacy_connection_undoes_too(bouncer: Bouncer) -> None:
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    try:
        with conn:
            bouncer.leave(conn, "advisory lock")
        assert bouncer.left_behind() == set()

        def fail_in_with_block() -> None:
            with conn:
                bouncer.leave(conn, "PREPARE")
                raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            fail_in_with_block()
        assert bouncer.left_behind() == set()
    finally:
        conn.close()


def test_a_real_dict_cursor_is_guarded_and_tracked(bouncer: Bouncer) -> None:
    with db_utils.get_pooled_connection() as conn:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            assert isinstance(cur, psycopg2.extras.RealDictCursor)
            cur.execute(STATES["temp table"].leave)
            with pytest.raises(SessionStateNotSupported, match="LISTEN"):
                cur.execute("LISTEN somewhere")
    assert bouncer.left_behind() == set()


# -- refused: raised before anything is sent; the caller's transaction stays usable ----------------------


def _autocommit(conn: Any, statement: str) -> None:
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement)


def _in_transaction(conn: Any, statement: str) -> None:
    with conn.cursor() as cur:
        cur.execute(statement)


def _set(conn: Any, name: str, value: object) -> Any:
    """``setattr`` that returns the connection: a step in the expressions below."""
    setattr(conn, name, value)
    return conn


REFUSED: dict[str, tuple[Callable[[Any], object], str]] = {
    "SET in autocommit": (lambda c: _autocommit(c, "SET search_path TO x"), "autocommit mode"),
    "advisory lock in autocommit": (lambda c: _autocommit(c, "SELECT pg_advisory_lock(7)"), "autocommit"),
    "PREPARE in autocommit": (lambda c: _autocommit(c, "PREPARE p AS SELECT 1"), "autocommit"),
    "temp table in autocommit": (lambda c: _autocommit(c, "CREATE TEMP TABLE t (i int)"), "autocommit"),
    "set_session in autocommit": (
        lambda c: (_set(c, "autocommit", True), c.set_session(readonly=True)),
        "set_session",
    ),
    "autocommit after set_session": (
        lambda c: (c.set_session(readonly=True), _set(c, "autocommit", True)),
        "set_session",
    ),
    "set_session(autocommit=True, ...)": (
        lambda c: c.set_session(isolation_level="SERIALIZABLE", autocommit=True),
        "set_session",
    ),
    "readonly attribute in autocommit": (
        lambda c: (_set(c, "autocommit", True), _set(c, "readonly", True)),
        "set_session",
    ),
    "set_isolation_level(0) after readonly": (
        lambda c: (_set(c, "readonly", True), c.set_isolation_level(0)),
        "set_session",
    ),
    "LISTEN": (lambda c: _in_transaction(c, "LISTEN news"), "LISTEN"),
    "LISTEN after a comment": (lambda c: _in_transaction(c, "/* hi */ SELECT 1; LISTEN news"), "LISTEN"),
    "DECLARE WITH HOLD": (
        lambda c: _in_transaction(c, "DECLARE cur CURSOR WITH HOLD FOR SELECT 1"),
        "WITH HOLD",
    ),
    "cursor(withhold=True)": (lambda c: c.cursor("named", withhold=True), "WITH HOLD"),
    "SET SESSION AUTHORIZATION": (
        lambda c: _in_transaction(c, "SET SESSION AUTHORIZATION DEFAULT"),
        "SESSION AUTHORIZATION",
    ),
    "SET client_encoding": (lambda c: _in_transaction(c, "SET client_encoding TO 'LATIN1'"), "encoding"),
    "LOAD": (lambda c: _in_transaction(c, "LOAD 'plpgsql'"), "LOAD"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_what_cannot_be_undone_is_refused_and_nothing_is_sent(
    bouncer: Bouncer, work_table: str, case: str
) -> None:
    action, reason = REFUSED[case]
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    try:
        with pytest.raises(SessionStateNotSupported, match=reason) as refused:
            action(conn)
        assert isinstance(refused.value, psycopg2.NotSupportedError)
        assert "DB_POOL_MODE=pgbouncer refuses" in str(refused.value)
        conn.autocommit = False
        conn.set_session(readonly="DEFAULT")
        with conn.cursor() as cur:  # the transaction is not aborted: the work still commits
            cur.execute(f"INSERT INTO {work_table} VALUES (2)")
        conn.commit()
    finally:
        conn.close()
    assert bouncer.left_behind() == set()
    assert rows(bouncer.server.postgres, work_table) == [(2,)]


@pytest.mark.parametrize(
    "statement", ["RESET ALL", "DISCARD ALL", "DEALLOCATE ALL", "SET LOCAL work_mem = '8MB'"]
)
def test_undoing_statements_and_set_local_are_allowed_in_autocommit(bouncer: Bouncer, statement: str) -> None:
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    try:
        _autocommit(conn, statement)
    finally:
        conn.close()
    assert bouncer.left_behind() == set()


def test_read_only_transactions_work_with_autocommit_off(bouncer: Bouncer, work_table: str) -> None:
    """set_session with autocommit off is client-side (psycopg2 sends BEGIN READ ONLY): allowed."""
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    try:
        conn.set_session(readonly=True)
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            cur.execute(f"INSERT INTO {work_table} VALUES (3)")
    finally:
        conn.close()
    assert bouncer.left_behind() == set()


def test_a_refusal_is_never_retried(bouncer: Bouncer) -> None:
    def listen(conn: Any) -> None:
        conn.cursor().execute("LISTEN news")

    outcome = db_utils.execute_with_pool_connection(listen)
    assert outcome["status"] == "error"
    assert (outcome["error_type"], outcome["attempts"]) == ("SessionStateNotSupported", 1)
    assert bouncer.server.password not in outcome["message"]


def test_the_mode_works_against_postgresql_directly_too(pg_pools: PostgresServer) -> None:
    """The same code and the same mode with or without PgBouncer: state simply ends with its transaction."""
    db_utils.get_connection_pool(mode="pgbouncer", pool_size=1, max_overflow=0)
    with db_utils.get_pooled_connection() as conn, conn.cursor() as cur:
        cur.execute("SET search_path TO mine, public")
        cur.execute("SHOW search_path")
        assert cur.fetchone() == ("mine, public",)
    with db_utils.get_pooled_connection() as conn, conn.cursor() as cur:
        cur.execute("SHOW search_path")
        assert cur.fetchone() == ('"$user", public',)
    (figures,) = db_utils.pool_status()["postgres"].values()
    assert (figures["connections_created"], figures["discarded_dirty"]) == (1, 0)  # undone, not discarded


def test_no_local_pool_recycle_zero_opens_a_client_connection_per_checkout(
    bouncer: Bouncer, clean_env: pytest.MonkeyPatch
) -> None:
    """The guide's "no local pool" setting for one-request workers: every checkout a new client connection."""
    clean_env.setenv("DB_POOL_RECYCLE", "0")
    pids = []
    for _ in range(3):
        with db_utils.get_pooled_connection() as conn:
            pids.append(conn.get_backend_pid())  # PgBouncer's key for this client connection
            bouncer.leave(conn, "SET")
    (figures,) = db_utils.pool_status()["postgres"].values()
    assert (figures["checkouts"], figures["reuses"]) == (3, 0)
    assert len(set(pids)) == 3
    assert bouncer.left_behind() == set()


def test_dates_still_parse_after_the_undo_on_a_non_iso_server(
    postgres_factory: Callable[..., PostgresServer],
    pgbouncer_factory: Callable[..., PgBouncerServer],
    clean_env: pytest.MonkeyPatch,
) -> None:
    """RESET ALL must not undo the ``SET DATESTYLE TO 'ISO'`` psycopg2 sends when it connects."""
    server = postgres_factory(max_connections=10, extra_settings={"datestyle": "SQL, DMY"})
    bouncer = pgbouncer_factory(postgres=server, default_pool_size=1)
    clean_env.setenv("DATABASE_URL", bouncer.libpq_url)
    clean_env.setenv("DB_POOL_MODE", "pgbouncer")
    db_utils.dispose_pools()
    try:
        conn = db_utils.get_postgres_connection()
        assert conn is not None
        try:
            with conn.cursor() as cur:
                cur.execute("SET search_path TO public")
                conn.commit()  # the undo runs RESET ALL first
                cur.execute("SELECT DATE '2026-11-22', current_setting('DateStyle')")
                day, datestyle = cur.fetchone()
        finally:
            conn.close()
    finally:
        db_utils.dispose_pools()
    assert day == datetime.date(2026, 11, 22)
    assert datestyle.startswith("ISO")


def test_sqlalchemy_core_on_the_engine_gets_the_same_undo(bouncer: Bouncer) -> None:
    """``get_connection_pool()`` returns the engine: Core code commits through the same connection class."""
    engine = db_utils.get_connection_pool()
    with engine.begin() as connection:
        connection.exec_driver_sql("SET search_path TO mine, public")
        connection.exec_driver_sql("SELECT pg_advisory_lock(11)")
        assert connection.exec_driver_sql("SHOW search_path").scalar() == "mine, public"
    assert bouncer.left_behind() == set()
