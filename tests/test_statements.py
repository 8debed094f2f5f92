"""Which statements leave session state behind: what the text shows, and code it cannot see into."""

from __future__ import annotations

import pytest

import db_utils
from db_utils.config import ConfigError
from db_utils.postgres.catalog import CATALOG_FUNCTIONS
from db_utils.postgres.statements import (
    CLEAN,
    CLEAN_FUNCTIONS_VARIABLE,
    CLOSE_AFTER_FUNCTIONS_VARIABLE,
    SESSION_STATE,
    UNRESETTABLE,
    classify,
    read_declared_functions,
)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 1",
        "SELECT * FROM t WHERE id = %s AND name = %(name)s",
        "SELECT count(*), lower(name), now() FROM t GROUP BY (lower(name))",
        "INSERT INTO t (a, b) VALUES (%s, now()) RETURNING id",
        'INSERT INTO "Orders" ("Id") VALUES (1)',
        "INSERT INTO public.t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = excluded.a",
        "CREATE TABLE IF NOT EXISTS t (id serial PRIMARY KEY, name varchar(50), price numeric(10, 2), "
        "owner int REFERENCES users (id), CHECK (price > 0))",
        "CREATE INDEX i ON t USING btree (lower(name))",
        "SELECT id FROM unnest(%s::int[]) AS u(id)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
        "SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t WHERE a IN (1, 2) AND NOT EXISTS "
        "(SELECT 1) AND b = ANY (%s)",
        "SELECT COALESCE(a, 0), EXTRACT(year FROM d), CAST(x AS varchar(3)), NULLIF(a, b) FROM t",
        "SELECT 'login(1)', $$my_fn()$$ -- other_fn()\n/* third_fn() */",
        "SELECT pg_catalog.lower('X')",
        "SET LOCAL statement_timeout = 1000",
        "CREATE FUNCTION f(a int) RETURNS int AS $$ SELECT a $$ LANGUAGE sql",
        "UPDATE t SET a = b.c FROM b WHERE b.id = t.id",
        "COPY t (a, b) FROM STDIN",
        "COPY (SELECT id, lower(name) FROM t) TO STDOUT WITH (FORMAT csv)",
        "EXPLAIN (ANALYZE, BUFFERS) SELECT 1",
        "WITH w AS MATERIALIZED (SELECT 1) SELECT * FROM w",
    ],
)
def test_statements_that_change_no_session_state(statement: str) -> None:
    assert classify(statement) == CLEAN


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT login(42)",  # the application's function may call set_config, create a TEMP table...
        "SELECT * FROM report_rows(%s)",
        "SELECT public.lower('x')",  # not the built-in
        'SELECT "Login"(1)',
        "SELECT uuid_generate_v4()",  # an extension's function: unknown too
        "SELECT * FROM a JOIN b ON is_visible(b.owner)",  # ON names a table only in DDL
        "SELECT E'it\\'s', my_fn()",
        "DO $$ BEGIN EXECUTE 'SET work_mem = 1'; END $$",
        "CALL nightly_job(1)",
        "SELECT setseed(0.5)",  # left out of the built-ins: the session's random seed
        "SET search_path TO app",
        "SELECT set_config('application_name', 'x', false)",
        "CREATE FUNCTION f() RETURNS int AS $$ SELECT set_config('work_mem', '1MB', false)::int $$ "
        "LANGUAGE sql",  # the name alone is seen: conservative
    ],
)
def test_statements_whose_session_state_discard_all_resets(statement: str) -> None:
    assert classify(statement) == SESSION_STATE


@pytest.mark.parametrize(
    "statement",
    [
        "SET app.tenant = '7'",
        "SET LOCAL app.tenant = '7'",
        "set session app.tenant to 7",
        "SELECT set_config('app.user_id', %s, false)",
        "SELECT set_config('app.user_id', %s, true)",
        "SELECT set_config(%s, %s, false)",  # the name may be a custom one
        "BEGIN; SET LOCAL app.tenant = '7'; SELECT 1",
        "LOAD 'auto_explain'",
        "SET client_encoding TO 'LATIN1'",
    ],
)
def test_statements_the_session_cannot_be_reset_from(statement: str) -> None:
    assert classify(statement) == UNRESETTABLE


def test_a_long_statement_with_many_calls_is_classified_in_linear_time() -> None:
    """The look-back for the word before each call is bounded: a generated INSERT of many rows calling
    now() must not rescan the statement per call."""
    rows = ", ".join(["(now(), lower('x'))"] * 20_000)
    assert classify(f"INSERT INTO t (a, b) VALUES {rows}") == CLEAN


@pytest.mark.postgres
def test_the_built_in_functions_are_the_servers(postgres) -> None:
    rows = postgres.query(
        "SELECT DISTINCT proname FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace"
    )
    served = {name for (name,) in rows}
    left_out = {"setseed", "pg_replication_origin_session_setup", "pg_replication_origin_session_reset"}
    assert served - CATALOG_FUNCTIONS == left_out
    assert served >= CATALOG_FUNCTIONS


@pytest.fixture
def declared(monkeypatch: pytest.MonkeyPatch):
    """Sets DB_POOL_CLEAN_FUNCTIONS and reads it again, as dispose_pools() does; restores it after."""

    def declare(value: str) -> None:
        monkeypatch.setenv(CLEAN_FUNCTIONS_VARIABLE, value)
        read_declared_functions()

    yield declare
    monkeypatch.delenv(CLEAN_FUNCTIONS_VARIABLE, raising=False)
    read_declared_functions()


def test_functions_declared_clean_cost_no_reset(declared) -> None:
    statements = [
        "SELECT st_distance(a, b) FROM t",
        "SELECT uuid_generate_v4()",
        "SELECT public.crypt(%s, x)",
    ]
    assert [classify(statement) for statement in statements] == [SESSION_STATE] * 3
    declared("ST_*, uuid_generate_v4 , public.crypt")
    assert [classify(statement) for statement in statements] == [CLEAN] * 3  # cached answers forgotten
    assert classify("SELECT crypt(%s, x)") == SESSION_STATE  # another schema's crypt
    assert classify("SELECT login(42)") == SESSION_STATE
    assert classify("SELECT st_x(p), set_config('work_mem', '1MB', false)") == SESSION_STATE  # still seen


def test_a_bad_declaration_names_the_variable(declared) -> None:
    with pytest.raises(ConfigError, match=r"DB_POOL_CLEAN_FUNCTIONS='st_\*; drop'"):
        declared("st_*; drop")


@pytest.mark.postgres
def test_dispose_pools_reads_the_declaration_again(pg_pools, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CLEAN_FUNCTIONS_VARIABLE, "report_rows")
    db_utils.dispose_pools()
    assert classify("SELECT * FROM report_rows(1)") == CLEAN
    monkeypatch.delenv(CLEAN_FUNCTIONS_VARIABLE)
    db_utils.dispose_pools()
    assert classify("SELECT * FROM report_rows(1)") == SESSION_STATE


def test_functions_declared_to_close_make_the_connection_unresettable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CLOSE_AFTER_FUNCTIONS_VARIABLE, "app.login, set_tenant")
    read_declared_functions()
    try:
        assert classify("SELECT app.login(%s)") == UNRESETTABLE
        assert classify("SELECT set_tenant(%s), lower(name) FROM t") == UNRESETTABLE
        assert classify("SELECT set_config('work_mem', '1MB', false), set_tenant(1)") == UNRESETTABLE
        assert classify("SELECT login(%s)") == SESSION_STATE  # another schema's login: only unknown
    finally:
        monkeypatch.delenv(CLOSE_AFTER_FUNCTIONS_VARIABLE)
        read_declared_functions()
    assert classify("SELECT app.login(%s)") == SESSION_STATE
