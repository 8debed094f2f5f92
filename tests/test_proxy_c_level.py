"""The proxy's known difference from a real psycopg2 connection, and the workarounds the guide gives.

psycopg2's C code type-checks a few arguments, so a proxy is refused where a real connection was
accepted (migration_guide/rules/PS102.md, "Before you migrate"). If a future change makes the proxy
acceptable, the first test fails: update the guide, then this file. The fixed path, which the codemod
writes, is ``driver_connection(conn)``: tested below for every such function, on both kinds of handle.
"""

from __future__ import annotations

import uuid

import psycopg2
import psycopg2.extensions as ext
import psycopg2.extras
import pytest
from psycopg2 import sql

import db_utils
from db_utils.postgres import connect, driver_connection

pytestmark = pytest.mark.postgres

REFUSED = {
    "Identifier.as_string": lambda conn: sql.Identifier("x").as_string(conn),
    "quote_ident": lambda conn: ext.quote_ident("x", conn),
    "adapt().prepare": lambda conn: ext.adapt("s").prepare(conn),
    "register_uuid": lambda conn: psycopg2.extras.register_uuid(conn_or_curs=conn),
    "encrypt_password": lambda conn: ext.encrypt_password("p", "u", conn, "scram-sha-256"),
}


@pytest.fixture(autouse=True)
def pg(pg_pools):
    return pg_pools


@pytest.mark.parametrize("call", REFUSED.values(), ids=REFUSED.keys())
def test_c_level_functions_refuse_the_proxy(call) -> None:
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    try:
        with pytest.raises(TypeError):
            call(conn)
    finally:
        conn.close()


def test_the_documented_workarounds_work_on_the_proxy() -> None:
    conn = db_utils.get_postgres_connection()
    assert conn is not None
    try:
        cur = conn.cursor()
        assert sql.Identifier("a b").as_string(cur) == '"a b"'
        assert sql.SQL("SELECT {}").format(sql.Literal("it's")).as_string(cur) == "SELECT 'it''s'"
        assert ext.quote_ident("x", cur) == '"x"'
        assert ext.encrypt_password("p", "u", cur, "scram-sha-256").startswith("SCRAM-SHA-256$")
        adapted = ext.adapt("s")
        adapted.prepare(cur.connection)
        assert adapted.getquoted() == b"'s'"
        psycopg2.extras.register_uuid(conn_or_curs=cur)
        cur.execute("SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid")
        assert str(cur.fetchone()[0]) == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    finally:
        conn.close()


# -- the fixed path: driver_connection(conn), which the codemod inserts ---------------------------------

UUID_TEXT = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"


def custom_loads(text):
    return ("custom", text)


#: name -> (register on the real connection, query, value once registered, value on a plain connection)
REGISTERING = {
    "register_type": (
        lambda c: ext.register_type(ext.new_type((23,), "INT_AS_TEXT", lambda v, cur: f"int:{v}"), c),
        "SELECT 7",
        "int:7",
        7,
    ),
    "register_uuid": (
        lambda c: psycopg2.extras.register_uuid(None, c),
        f"SELECT '{UUID_TEXT}'::uuid",
        uuid.UUID(UUID_TEXT),
        UUID_TEXT,
    ),
    "register_default_json": (
        lambda c: psycopg2.extras.register_default_json(c, loads=custom_loads),
        """SELECT '{"a": 1}'::json""",
        ("custom", '{"a": 1}'),
        {"a": 1},
    ),
    "register_default_jsonb": (
        lambda c: psycopg2.extras.register_default_jsonb(c, loads=custom_loads),
        """SELECT '{"a": 1}'::jsonb""",
        ("custom", '{"a": 1}'),
        {"a": 1},
    ),
    "register_hstore": (
        psycopg2.extras.register_hstore,
        "SELECT 'a=>1'::hstore",
        {"a": "1"},
        '"a"=>"1"',
    ),
    "register_composite": (
        lambda c: psycopg2.extras.register_composite("pair", c),
        "SELECT (1, 'x')::pair",
        (1, "x"),
        "(1,x)",
    ),
}

STATELESS = {
    "Identifier.as_string": (lambda c: sql.Identifier("a b").as_string(c), '"a b"'),
    "Composed.as_string": (
        lambda c: sql.SQL("SELECT {}").format(sql.Literal("it's")).as_string(c),
        "SELECT 'it''s'",
    ),
    "quote_ident": (lambda c: ext.quote_ident("x y", c), '"x y"'),
    "adapt().prepare": (lambda c: prepared(ext.adapt("s"), c).getquoted(), b"'s'"),
    "encrypt_password": (
        lambda c: ext.encrypt_password("p", "u", c, "scram-sha-256").startswith("SCRAM-SHA-256$"),
        True,
    ),
}


def prepared(adapted, conn):
    adapted.prepare(conn)
    return adapted


@pytest.fixture
def extension_db(pg):
    """A database with hstore and a composite type ``pair(a int, b text)``; its DSN."""
    name = f"clevel_{uuid.uuid4().hex[:10]}"
    pg.query(f"CREATE DATABASE {name}")
    dsn = pg.dsn.replace(f"dbname={pg.database}", f"dbname={name}")
    setup = psycopg2.connect(dsn)
    with setup, setup.cursor() as cur:
        cur.execute("CREATE EXTENSION hstore; CREATE TYPE pair AS (a int, b text)")
    setup.close()
    yield dsn
    db_utils.dispose_pools()
    pg.query(f"DROP DATABASE {name}")


def borrowers(dsn):
    """Both kinds of pooled handle: the migrated helper's and the legacy one's."""
    return {"connect": lambda: connect(dsn), "get_postgres_connection": db_utils.get_postgres_connection}


def fetch(conn, query):
    with conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchone()[0]


@pytest.mark.parametrize("borrower", ["connect", "get_postgres_connection"])
@pytest.mark.parametrize("name", STATELESS)
def test_stateless_c_functions_work_through_driver_connection(
    name, borrower, extension_db, clean_env
) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql://" + dsn_to_url_tail(extension_db))
    call, expected = STATELESS[name]
    conn = borrowers(extension_db)[borrower]()
    pid = conn.info.backend_pid
    assert call(driver_connection(conn)) == expected
    conn.close()
    conn = borrowers(extension_db)[borrower]()
    assert conn.info.backend_pid == pid  # nothing registered: the connection is reused
    conn.close()


@pytest.mark.parametrize("borrower", ["connect", "get_postgres_connection"])
@pytest.mark.parametrize("name", REGISTERING)
def test_registered_typecasters_work_and_never_reach_the_next_borrower(
    name, borrower, extension_db, clean_env
) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql://" + dsn_to_url_tail(extension_db))
    register, query, registered, plain = REGISTERING[name]
    conn = borrowers(extension_db)[borrower]()
    assert fetch(conn, query) == plain
    pid = conn.info.backend_pid
    register(driver_connection(conn))
    assert fetch(conn, query) == registered  # (a composite comes back as a namedtuple: equal to a tuple)
    conn.close()
    conn = borrowers(extension_db)[borrower]()
    assert conn.info.backend_pid == pid  # reused: the reset put the connect-time typecasters back
    assert fetch(conn, query) == plain
    conn.close()
    # The same calls on a plain psycopg2 connection: driver_connection hands it through unchanged.
    plain_conn = psycopg2.connect(extension_db)
    assert driver_connection(plain_conn) is plain_conn
    register(driver_connection(plain_conn))
    assert fetch(plain_conn, query) == registered
    plain_conn.close()


def dsn_to_url_tail(dsn):
    """``user:password@host:port/dbname`` from the test server's DSN."""
    parts = dict(item.split("=", 1) for item in dsn.split())
    return f"{parts['user']}:{parts['password']}@{parts['host']}:{parts['port']}/{parts['dbname']}"
