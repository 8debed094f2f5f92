"""``db_utils.postgres.connect``: psycopg2.connect's signature and errors, pooled per parameters.

Every test compares with what ``psycopg2.connect`` itself does, against the real server.
"""

from __future__ import annotations

import gc
import io
import logging
import threading
import uuid
import warnings
from typing import Any

import psycopg2
import psycopg2.extensions as ext
import psycopg2.extras
import pytest

import db_utils
from db_utils.postgres import connect, driver_connection
from db_utils.postgres.connect import ConnectParameters
from db_utils.postgres.pgbouncer import TransactionPooledConnection
from db_utils.postgres.statements import database_ddl_target
from tests.pg_helpers import backend_pid
from tests.test_fork import run_in_child

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def pg(pg_pools):
    return pg_pools


def pools() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = db_utils.pool_status()["postgres"]
    return found


def keywords(pg) -> dict[str, Any]:
    return {"host": pg.host, "port": pg.port, "dbname": pg.database, "user": pg.user, "password": pg.password}


# -- signature and errors ------------------------------------------------------------------------------


def test_dsn_only_kwargs_only_and_both_merged_reach_the_same_pool(pg) -> None:
    without_dbname = f"host={pg.host} port={pg.port} user={pg.user} password={pg.password}"
    shapes = [
        lambda: connect(pg.dsn),
        lambda: connect(**keywords(pg)),
        lambda: connect(dsn=f"{without_dbname} dbname=nonexistent", dbname=pg.database),  # kwargs win
        lambda: connect(without_dbname, database=pg.database),  # psycopg2's alias
    ]
    for shape in shapes:
        conn = shape()
        assert isinstance(conn, db_utils.PooledConnection)
        assert conn.info.dbname == pg.database
        conn.close()
    # psycopg2 builds one DSN from each shape: the merged ones are equal, so they share a pool
    assert len(pools()) == 3


def test_argument_errors_are_psycopg2s(pg) -> None:
    for dsn in ["host=x nonsense", f"{pg.dsn} bogus=1"]:
        with pytest.raises(psycopg2.ProgrammingError) as theirs:
            psycopg2.connect(dsn)
        with pytest.raises(psycopg2.ProgrammingError) as ours:
            connect(dsn)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(TypeError, match="can't specify both"):
        connect(database="a", dbname="b")
    assert pools() == {}


def test_connection_failure_is_psycopg2s_error_without_the_password(pg) -> None:
    wrong = {**keywords(pg), "password": "not-the-" + pg.password}
    with pytest.raises(psycopg2.OperationalError) as theirs:
        psycopg2.connect(**wrong)
    with pytest.raises(psycopg2.OperationalError) as ours:
        connect(**wrong)
    assert type(ours.value) is type(theirs.value)
    assert str(ours.value) == str(theirs.value)
    assert "password authentication failed" in str(ours.value)
    for shown in (str(ours.value), repr(ours.value), *pools()):
        assert pg.password not in shown
    key = ConnectParameters(pg.dsn, None, None, ())
    assert pg.password not in repr(key)
    assert pg.password not in str(key)


# -- pooling -------------------------------------------------------------------------------------------


def test_same_parameters_reuse_the_backend_different_ones_get_another_pool(pg) -> None:
    conn = connect(pg.dsn, application_name="a")
    first = backend_pid(conn)
    conn.close()
    conn = connect(pg.dsn, application_name="a")
    assert backend_pid(conn) == first
    other = connect(pg.dsn, application_name="b")
    assert backend_pid(other) != first
    conn.close()
    other.close()
    assert len(pools()) == 2


def test_concurrent_first_calls_create_one_pool(pg) -> None:
    threads = 8
    barrier = threading.Barrier(threads)
    handles = []

    def first_call():
        barrier.wait()
        handles.append(connect(pg.dsn))

    workers = [threading.Thread(target=first_call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(handles) == threads
    ((_key, figures),) = pools().items()
    assert figures["checked_out"] == threads
    for conn in handles:
        conn.close()


def test_a_libpq_environment_change_lands_in_another_pool(pg, clean_env) -> None:
    partial = pg.dsn  # no application_name: libpq reads PGAPPNAME
    clean_env.setenv("PGAPPNAME", "first")
    conn = connect(partial)
    assert conn.info.parameter_status("application_name") == "first"
    conn.close()
    clean_env.setenv("PGAPPNAME", "second")
    conn = connect(partial)
    assert conn.info.parameter_status("application_name") == "second"
    conn.close()
    assert len(pools()) == 2


def test_pools_use_the_db_pool_settings_and_show_no_password(pg, clean_env) -> None:
    clean_env.setenv("DB_POOL_SIZE", "3")
    conn = connect(pg.dsn)
    assert pg.password not in repr(conn)
    conn.close()
    ((key, figures),) = pools().items()
    assert figures["pool_size"] == 3
    assert pg.password not in key
    assert key == f"postgresql://{pg.user}:***@{pg.host}:{pg.port}/{pg.database} (psycopg2.connect)"


def test_async_and_unpoolable_factories_go_to_psycopg2_unchanged(pg) -> None:
    for flag in ("async_", "async"):
        conn = connect(pg.dsn, **{flag: True})
        assert type(conn) is ext.connection
        assert conn.async_ == 1
        conn.close()

    def factory(dsn, **kwargs):
        return ext.connection(dsn, **kwargs)

    conn = connect(pg.dsn, connection_factory=factory)
    assert type(conn) is ext.connection
    conn.close()
    assert pools() == {}
    conn = connect(pg.dsn, async_=False)  # psycopg2's ordinary synchronous connection: pooled
    assert isinstance(conn, db_utils.PooledConnection)
    conn.close()


def test_the_number_of_pools_is_bounded(pg, clean_env) -> None:
    clean_env.setenv("DB_CONNECT_MAX_POOLS", "2")
    for name in ("a", "b", "c"):  # each returned at once: the least recently used pool is disposed
        connect(pg.dsn, application_name=name).close()
    assert sorted(key.split("application_name=")[1][0] for key in pools()) == ["b", "c"]
    held = [connect(pg.dsn, application_name=name) for name in ("b", "c")]
    unpooled = connect(pg.dsn, application_name="d")  # every pool busy: psycopg2's own connection
    assert type(unpooled) is ext.connection
    unpooled.close()
    for conn in held:
        conn.close()
    assert len(pools()) == 2


def test_a_bad_pool_bound_is_a_config_error_naming_the_variable(pg, clean_env) -> None:
    clean_env.setenv("DB_CONNECT_MAX_POOLS", "0")
    with pytest.raises(db_utils.ConfigError, match="DB_CONNECT_MAX_POOLS"):
        connect(pg.dsn)


# -- the proxy semantics hold for connect()'s handles ------------------------------------------------


def test_the_handle_keeps_every_proxy_semantic(pg, scratch_table) -> None:
    conn = connect(pg.dsn)
    pid = backend_pid(conn)
    with conn:  # psycopg2's meaning: commit, do not close
        conn.cursor().execute(f"INSERT INTO {scratch_table} VALUES (1)")
    assert not conn.closed
    conn.autocommit = True
    conn.close()
    conn.close()  # idempotent
    assert conn.closed
    with pytest.raises(psycopg2.InterfaceError):
        conn.cursor()
    conn = connect(pg.dsn)
    assert backend_pid(conn) == pid
    assert conn.autocommit is False
    conn.close()
    assert pg.query(f"SELECT count(*) FROM {scratch_table}") == [(1,)]


def test_a_dropped_handle_is_returned_with_a_warning(pg) -> None:
    conn = connect(pg.dsn)
    pid = backend_pid(conn)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del conn
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    conn = connect(pg.dsn)
    assert backend_pid(conn) == pid
    conn.close()


# -- connection_factory and cursor_factory -----------------------------------------------------------


class Filtered(psycopg2.extras.LoggingConnection):  # type: ignore[misc]  # psycopg2 has no stubs
    def filter(self, msg, curs):
        return b"filtered: " + msg


def test_logging_connection_works_through_the_handle(pg) -> None:
    for factory in (psycopg2.extras.LoggingConnection, Filtered):
        log = io.StringIO()
        conn = connect(pg.dsn, connection_factory=factory)
        assert isinstance(driver_connection(conn), factory)
        conn.initialize(log)
        with conn.cursor() as cur:
            cur.execute("SELECT %s", (42,))
            assert cur.fetchone() == (42,)
        expected = "filtered: SELECT 42" if factory is Filtered else "SELECT 42"
        assert log.getvalue().strip() == expected
        pid = backend_pid(conn)
        conn.close()
        # The next borrower gets it as psycopg2.connect would: not initialized, so it must initialize it.
        conn = connect(pg.dsn, connection_factory=factory)
        assert backend_pid_plain(conn) == pid
        with pytest.raises(psycopg2.ProgrammingError, match="initialize"):
            conn.cursor()
        conn.initialize(logging.getLogger("test_postgres_connect"))
        conn.cursor().execute("SELECT 1")
        conn.close()
    assert len(pools()) == 2


class Bypassing(ext.connection):  # type: ignore[misc]  # psycopg2 has no stubs
    """A factory whose cursor() skips the classes above it (no super() call): legal, if unusual."""

    def cursor(self, *args, **kwargs):
        return ext.connection.cursor(self, *args, **kwargs)


def test_a_factory_bypassing_the_tracking_cursor_still_gets_a_full_reset(pg) -> None:
    conn = connect(pg.dsn, connection_factory=Bypassing)
    pid = backend_pid(conn)
    conn.cursor().execute("SET search_path TO pg_catalog")
    conn.commit()  # a committed SET outlives the transaction: only DISCARD ALL undoes it
    conn.close()
    conn = connect(pg.dsn, connection_factory=Bypassing)
    assert backend_pid(conn) == pid
    with conn.cursor() as cur:
        cur.execute("SHOW search_path")
        assert cur.fetchone()[0] == '"$user", public'
    conn.close()


def test_connect_pools_follow_db_pool_mode(pg, clean_env) -> None:
    clean_env.setenv("DB_POOL_MODE", "pgbouncer")
    log = io.StringIO()
    conn = connect(pg.dsn, connection_factory=psycopg2.extras.LoggingConnection)
    raw = driver_connection(conn)
    assert isinstance(raw, TransactionPooledConnection)
    assert isinstance(raw, psycopg2.extras.LoggingConnection)
    conn.initialize(log)
    conn.autocommit = True
    with pytest.raises(db_utils.SessionStateNotSupported):
        conn.cursor().execute("SET search_path TO pg_catalog")
    conn.close()
    plain = connect(pg.dsn)
    assert isinstance(driver_connection(plain), TransactionPooledConnection)
    plain.close()


def backend_pid_plain(conn) -> int:
    """The backend pid without a cursor (a LoggingConnection refuses cursors before initialize())."""
    return int(conn.info.backend_pid)


def test_dict_connections_and_connect_time_cursor_factory(pg) -> None:
    conn = connect(pg.dsn, connection_factory=psycopg2.extras.RealDictConnection)
    with conn.cursor() as cur:
        cur.execute("SELECT 1 AS one")
        assert cur.fetchone() == {"one": 1}
    conn.close()
    conn = connect(pg.dsn, connection_factory=psycopg2.extras.DictConnection)
    with conn.cursor() as cur:
        cur.execute("SELECT 1 AS one")
        row = cur.fetchone()
        assert row["one"] == row[0] == 1
    conn.close()

    conn = connect(pg.dsn, cursor_factory=psycopg2.extras.RealDictCursor)
    pid = backend_pid_plain(conn)
    assert conn.cursor_factory is psycopg2.extras.RealDictCursor
    conn.cursor_factory = None  # a borrower's change...
    conn.close()
    conn = connect(pg.dsn, cursor_factory=psycopg2.extras.RealDictCursor)
    assert backend_pid_plain(conn) == pid
    assert conn.cursor_factory is psycopg2.extras.RealDictCursor  # ...undone: the connect-time default
    with conn.cursor() as cur:
        cur.execute("SELECT 2 AS two")
        assert cur.fetchone() == {"two": 2}
    conn.close()


# -- driver_connection -------------------------------------------------------------------------------


def test_driver_connection_unwraps_only_pooled_handles(pg) -> None:
    conn = connect(pg.dsn)
    raw = driver_connection(conn)
    assert type(raw) is not db_utils.PooledConnection
    assert isinstance(raw, ext.connection)
    assert raw.info.backend_pid == conn.info.backend_pid
    cursor = conn.cursor()
    assert driver_connection(cursor) is cursor
    conn.close()
    with pytest.raises(psycopg2.InterfaceError):
        driver_connection(conn)
    plain = pg.connect()
    assert driver_connection(plain) is plain
    plain.close()
    for other in (None, "text", 3):
        assert driver_connection(other) is other


# -- the idiomatic API with a callable source --------------------------------------------------------


def insert_then_fail(source, statement, by_keyword=False) -> None:
    block = (
        db_utils.get_pooled_connection(url=source) if by_keyword else db_utils.get_pooled_connection(source)
    )
    with block as conn:
        conn.cursor().execute(statement)
        raise RuntimeError


def test_get_pooled_connection_borrows_from_a_helper(pg, scratch_table) -> None:
    def get_db_connection():
        return connect(pg.dsn)

    with db_utils.get_pooled_connection(get_db_connection) as conn:
        conn.cursor().execute(f"INSERT INTO {scratch_table} VALUES (1)")
        pid = backend_pid(conn)
    assert conn.closed
    with pytest.raises(RuntimeError):
        insert_then_fail(get_db_connection, f"INSERT INTO {scratch_table} VALUES (2)", by_keyword=True)
    assert pg.query(f"SELECT id FROM {scratch_table}") == [(1,)]
    with db_utils.get_pooled_connection(get_db_connection) as conn:
        assert backend_pid(conn) == pid  # the helper's pool, not the DATABASE_URL pool
    assert list(pools()) == [next(iter(pools()))]
    assert "(psycopg2.connect)" in next(iter(pools()))


def test_a_helper_returning_a_plain_connection_gets_the_same_semantics(pg, scratch_table) -> None:
    opened = []

    def legacy_helper():
        opened.append(pg.connect())
        return opened[-1]

    with db_utils.get_pooled_connection(legacy_helper) as conn:
        conn.cursor().execute(f"INSERT INTO {scratch_table} VALUES (1)")
    with pytest.raises(RuntimeError):
        insert_then_fail(legacy_helper, f"INSERT INTO {scratch_table} VALUES (2)")
    assert all(c.closed for c in opened)
    assert len(opened) == 2
    assert pg.query(f"SELECT id FROM {scratch_table}") == [(1,)]


def test_a_helper_returning_none_raises_operational_error(pg) -> None:
    def get_db_connection():
        return None

    with pytest.raises(psycopg2.OperationalError, match=r"get_db_connection\(\) returned None"):
        with db_utils.get_pooled_connection(get_db_connection):
            pass
    with pytest.raises(psycopg2.OperationalError):
        db_utils.execute_with_pool(lambda conn: 1, get_db_connection)
    outcome = db_utils.execute_with_pool_connection(lambda conn: 1, get_db_connection, retries=1, backoff=0)
    assert outcome["status"] == "error"
    assert outcome["error_type"] == "OperationalError"
    assert outcome["attempts"] == 2  # like a failed connect: nothing ran, so it is retried


def test_execute_with_pool_functions_take_a_helper(pg, scratch_table) -> None:
    def get_db_connection():
        return connect(pg.dsn)

    def insert(conn):
        conn.cursor().execute(f"INSERT INTO {scratch_table} VALUES (1) RETURNING id")
        return "done"

    assert db_utils.execute_with_pool(insert, get_db_connection) == "done"
    outcome = db_utils.execute_with_pool_connection(insert, url=get_db_connection)
    assert outcome["status"] == "error"
    assert outcome["error_type"] == "UniqueViolation"
    assert outcome["attempts"] == 1  # never retried
    assert pg.query(f"SELECT id FROM {scratch_table}") == [(1,)]
    ((_key, figures),) = pools().items()
    assert figures["checked_out"] == 0


def test_execute_with_pool_connection_retries_a_helpers_disconnect(pg) -> None:
    def get_db_connection():
        return connect(pg.dsn)

    calls = []

    def operation(conn):
        calls.append(backend_pid(conn))
        if len(calls) == 1:
            pg.terminate_backends()
        return backend_pid(conn)

    outcome = db_utils.execute_with_pool_connection(operation, get_db_connection, backoff=0)
    assert outcome["status"] == "success"
    assert outcome["attempts"] == 2
    assert outcome["result"] != calls[0]


# -- DROP DATABASE -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "target"),
    [
        ("DROP DATABASE foo", "foo"),
        ("  /* c */ drop database IF EXISTS Foo WITH (FORCE)", "foo"),
        ('DROP DATABASE "My""Db"', 'My"Db'),
        ("-- note\nALTER DATABASE bar RENAME TO baz", "bar"),
        ("ALTER DATABASE bar SET TABLESPACE fast", "bar"),
        ("ALTER DATABASE bar SET search_path = x", None),  # needs no exclusive access
        ("CREATE DATABASE copy TEMPLATE source", "source"),
        ('CREATE DATABASE copy WITH OWNER = app TEMPLATE = "Src" ENCODING utf8', "Src"),
        ("CREATE DATABASE plain", None),
        ("SELECT 'DROP DATABASE foo'", None),
        (b"DROP DATABASE foo", "foo"),
    ],
)
def test_statements_that_need_a_database_free(statement, target) -> None:
    assert database_ddl_target(statement, None) == target


def use(conn) -> None:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        conn.close()


def test_drop_database_closes_idle_pooled_connections_to_it(pg) -> None:
    name = f"db_{uuid.uuid4().hex[:10]}"
    dsn_of = pg.dsn.replace(f"dbname={pg.database}", f"dbname={name}")
    url_of = pg.url.rsplit("/", 1)[0] + f"/{name}"
    for _round in range(2):  # creating and dropping it again works too
        admin = connect(pg.dsn)
        admin.autocommit = True
        admin.cursor().execute(f"CREATE DATABASE {name}")
        admin.close()
        # Connections to it in two connect() pools and one URL pool, all returned: idle, still open.
        held = [connect(dsn_of), connect(dsn_of, application_name="x")]
        with db_utils.get_pooled_connection(url_of) as conn:
            use(held[0])
            use(held[1])
            conn.cursor().execute("SELECT 1")
        connected = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        assert pg.query(connected, (name,)) == [(3,)]
        admin = connect(pg.dsn)
        admin.autocommit = True
        admin.cursor().execute(f"DROP DATABASE {name}")
        admin.close()
        assert pg.query("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)) == [(0,)]


def test_drop_database_through_a_composed_query_and_rename(pg) -> None:
    from psycopg2 import sql

    name, renamed = f"db_{uuid.uuid4().hex[:10]}", f"db_{uuid.uuid4().hex[:10]}"
    with db_utils.get_pooled_connection() as admin:
        admin.autocommit = True
        admin.cursor().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    use(connect(pg.dsn.replace(f"dbname={pg.database}", f"dbname={name}")))
    with db_utils.get_pooled_connection() as admin:
        admin.autocommit = True
        admin.cursor().execute(f"ALTER DATABASE {name} RENAME TO {renamed}")
    use(connect(pg.dsn.replace(f"dbname={pg.database}", f"dbname={renamed}")))
    with db_utils.get_pooled_connection() as admin:
        admin.autocommit = True
        admin.cursor().execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(renamed)))


def test_a_checked_out_connection_still_blocks_the_drop_as_before(pg) -> None:
    name = f"db_{uuid.uuid4().hex[:10]}"
    pg.query(f"CREATE DATABASE {name}")
    held = connect(pg.dsn.replace(f"dbname={pg.database}", f"dbname={name}"))
    try:
        admin = connect(pg.dsn)
        admin.autocommit = True
        with pytest.raises(psycopg2.errors.ObjectInUse):
            admin.cursor().execute(f"DROP DATABASE {name}")
        admin.close()
    finally:
        held.close()
    admin = connect(pg.dsn)
    admin.autocommit = True
    admin.cursor().execute(f"DROP DATABASE {name}")
    admin.close()


# -- lifecycle: dispose_pools, fork ------------------------------------------------------------------


def test_dispose_pools_closes_connect_pools(pg) -> None:
    conn = connect(pg.dsn)
    pid = backend_pid(conn)
    conn.close()
    assert db_utils.dispose_pools() >= 1
    assert pools() == {}
    conn = connect(pg.dsn)
    assert backend_pid(conn) != pid
    conn.close()


def test_forked_child_gets_its_own_connect_connections(pg) -> None:
    conn = connect(pg.dsn)
    parent_idle = backend_pid(conn)
    conn.close()
    held = connect(pg.dsn)
    held_pid = backend_pid(held)

    def child_body():
        mine = connect(pg.dsn)
        pid = backend_pid(mine)
        mine.close()
        held.close()
        gc.collect()
        return pid

    child_pid = int(run_in_child(child_body))
    assert child_pid not in (parent_idle, held_pid)
    assert backend_pid(held) == held_pid
    held.close()
    conn = connect(pg.dsn)
    assert backend_pid(conn) in (parent_idle, held_pid)
    conn.close()
    ((_key, figures),) = pools().items()
    assert figures["invalidated"] == 0


def test_a_closed_handle_still_tells_what_a_closed_psycopg2_connection_does(pg) -> None:
    """pg-upsert reopens a closed connection with ``connect(conn.dsn)``: psycopg2 keeps the DSN (password
    masked) and the server's versions readable after close, and so does the handle."""
    plain = psycopg2.connect(pg.dsn)
    plain.close()
    pooled = connect(pg.dsn)
    pooled.close()
    assert pooled.dsn == plain.dsn
    assert "xxx" in pooled.dsn
    assert pg.password not in pooled.dsn
    assert (pooled.server_version, pooled.protocol_version) == (plain.server_version, plain.protocol_version)
    assert pooled.closed
    with pytest.raises(psycopg2.InterfaceError, match="connection already closed"):
        pooled.cursor()
    with pytest.raises(psycopg2.InterfaceError, match="connection already closed"):
        pooled.get_dsn_parameters()  # as psycopg2's
