"""The proxy's known difference from a real psycopg2 connection, and the workarounds the guide gives.

psycopg2's C code type-checks a few arguments, so a proxy is refused where a real connection was
accepted (migration_guide/rules/PS102.md, "Before you migrate"). If a future change makes the proxy
acceptable, the first test fails: update the guide, then this file.
"""

from __future__ import annotations

import psycopg2.extensions as ext
import psycopg2.extras
import pytest
from psycopg2 import sql

import db_utils

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
    try:
        with pytest.raises(TypeError):
            call(conn)
    finally:
        conn.close()


def test_the_documented_workarounds_work_on_the_proxy() -> None:
    conn = db_utils.get_postgres_connection()
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
