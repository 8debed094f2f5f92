"""execute_with_pool_connection: retries disconnects only; exhaustion raises a clear timeout."""

from __future__ import annotations

import psycopg2
import pytest
from sqlalchemy.exc import TimeoutError as SATimeoutError

import db_utils
import db_utils.postgres.api
import db_utils.postgres.registry
from db_utils import PoolTimeoutError
from tests.pg_helpers import present, terminate_and_wait

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def pg(pg_pools, clean_env):
    # Connections used within the hour skip validation: a killed backend is met mid-operation.
    clean_env.setenv("DB_POOL_PING_AFTER", "3600")
    return pg_pools


@pytest.fixture
def table(scratch_table):
    return scratch_table


def warm_pool(n: int) -> None:
    held = [present(db_utils.get_postgres_connection()) for _ in range(n)]
    for conn in held:
        conn.cursor().execute("SELECT 1")
        conn.close()


def select_one(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        return cur.fetchone()[0]


def test_success_reports_result_and_one_attempt():
    assert db_utils.execute_with_pool_connection(select_one) == {
        "status": "success",
        "result": 1,
        "attempts": 1,
    }


def test_terminated_backends_never_reach_the_operation(pg):
    # Inside the ping window: the closed sockets are seen at checkout, so not even a retry is needed.
    warm_pool(3)
    assert terminate_and_wait(pg) == 3
    outcome = db_utils.execute_with_pool_connection(select_one, backoff=0.001)
    assert outcome == {"status": "success", "result": 1, "attempts": 1}


def test_disconnect_mid_operation_is_retried_on_a_fresh_connection(pg, table):
    calls = []

    def operation(conn):
        calls.append(conn.get_backend_pid())
        if len(calls) == 1:
            pg.terminate_backends()  # the server goes away while we work
        conn.cursor().execute(f"INSERT INTO {table} VALUES (1)")
        return "done"

    outcome = db_utils.execute_with_pool_connection(operation, backoff=0.001)
    assert outcome["status"] == "success"
    assert outcome["attempts"] == 2
    assert calls[0] != calls[1]
    assert pg.query(f"SELECT count(*) FROM {table}") == [(1,)]


def test_integrity_error_is_never_retried(table):
    calls = []

    def duplicate(conn):
        calls.append(1)
        cur = conn.cursor()
        cur.execute(f"INSERT INTO {table} VALUES (1)")
        cur.execute(f"INSERT INTO {table} VALUES (1)")

    outcome = db_utils.execute_with_pool_connection(duplicate, backoff=0.001)
    assert outcome["status"] == "error"
    assert outcome["error_type"] == "UniqueViolation"
    assert outcome["attempts"] == 1
    assert "duplicate key" in outcome["message"]
    assert calls == [1]


def test_syntax_error_is_never_retried():
    outcome = db_utils.execute_with_pool_connection(lambda conn: conn.cursor().execute("SELEC 1"))
    assert (outcome["status"], outcome["error_type"], outcome["attempts"]) == ("error", "SyntaxError", 1)


def test_retries_give_up_after_the_configured_count(pg, clean_env):
    clean_env.setenv("DATABASE_URL", pg.url.replace(f":{pg.port}/", ":1/"))
    outcome = db_utils.execute_with_pool_connection(select_one, retries=2, backoff=0.001)
    assert (outcome["status"], outcome["error_type"], outcome["attempts"]) == ("error", "OperationalError", 3)
    assert pg.password not in outcome["message"]


def test_url_is_resolved_once_per_call_whatever_the_attempts(pg, clean_env, monkeypatch):
    clean_env.setenv("DATABASE_URL", pg.url.replace(f":{pg.port}/", ":1/"))
    resolutions = []
    real_pool_for = db_utils.postgres.registry.pool_for  # what api.pool_for is until patched

    def counting_pool_for(url=None, **settings):
        resolutions.append(url)
        return real_pool_for(url, **settings)

    monkeypatch.setattr(db_utils.postgres.api, "pool_for", counting_pool_for)
    outcome = db_utils.execute_with_pool_connection(select_one, retries=2, backoff=0.001)
    assert (outcome["status"], outcome["attempts"]) == ("error", 3)
    assert resolutions == [None]


def test_deadline_stops_retrying_early(pg, clean_env):
    clean_env.setenv("DATABASE_URL", pg.url.replace(f":{pg.port}/", ":1/"))
    outcome = db_utils.execute_with_pool_connection(select_one, retries=50, backoff=10, deadline=1)
    assert outcome["attempts"] == 1


def test_non_database_errors_propagate():
    with pytest.raises(ZeroDivisionError):
        db_utils.execute_with_pool_connection(lambda conn: 1 / 0)


def test_negative_retries_rejected():
    with pytest.raises(ValueError, match="retries"):
        db_utils.execute_with_pool_connection(select_one, retries=-1)


def test_exhaustion_raises_clear_timeout_naming_size_overflow_timeout():
    db_utils.get_connection_pool(pool_size=1, max_overflow=1, timeout=0.2)
    holders = [present(db_utils.get_postgres_connection()) for _ in range(2)]
    with pytest.raises(PoolTimeoutError) as info, db_utils.get_pooled_connection():
        pass
    message = str(info.value)
    assert isinstance(info.value, SATimeoutError)
    # A migrated helper's `except psycopg2.OperationalError: return None` must still see "no connection".
    assert isinstance(info.value, psycopg2.OperationalError)
    assert "pool size 1" in message
    assert "max overflow 1" in message
    assert "timeout 0.2 s" in message
    outcome = db_utils.execute_with_pool_connection(select_one)
    assert (outcome["error_type"], outcome["attempts"]) == ("PoolTimeoutError", 1)
    (stats,) = db_utils.pool_status()["postgres"].values()
    assert stats["timeouts"] == 2
    for conn in holders:
        conn.close()
    assert db_utils.execute_with_pool_connection(select_one)["status"] == "success"


def kill_own_backend(pg, conn) -> None:
    """Terminate the server process behind ``conn`` and wait until it has exited."""
    pg.query("SELECT pg_terminate_backend(%s, 10000)", (conn.get_backend_pid(),))


def test_retries_are_bounded_by_the_deadline_not_a_count(pg, clean_env):
    clean_env.setenv("DATABASE_URL", pg.url.replace(f":{pg.port}/", ":1/"))
    clean_env.setenv("DB_RETRY_DEADLINE", "0.5")
    outcome = db_utils.execute_with_pool_connection(select_one, backoff=0.001, max_backoff=0.01)
    assert outcome["status"] == "error"
    assert outcome["attempts"] > 4  # the old fixed count was 3 retries


def test_a_disconnect_during_the_final_commit_is_not_retried(pg, table):
    calls = []

    def operation(conn):
        calls.append(1)
        conn.cursor().execute(f"INSERT INTO {table} VALUES (1)")
        kill_own_backend(pg, conn)  # the COMMIT sent after the operation meets a dead connection

    outcome = db_utils.execute_with_pool_connection(operation, backoff=0.001)
    assert (outcome["status"], outcome["attempts"], calls) == ("error", 1, [1])


@pytest.mark.parametrize("commits", ["commit()", "autocommit"])
def test_work_that_may_have_committed_is_not_retried(pg, table, commits):
    calls = []

    def operation(conn):
        calls.append(1)
        if commits == "autocommit":
            conn.autocommit = True
        conn.cursor().execute(f"INSERT INTO {table} VALUES (1)")
        if commits == "commit()":
            conn.commit()
        kill_own_backend(pg, conn)
        conn.cursor().execute("SELECT 1")

    outcome = db_utils.execute_with_pool_connection(operation, backoff=0.001)
    assert (outcome["status"], outcome["attempts"], calls) == ("error", 1, [1])
    assert pg.query(f"SELECT count(*) FROM {table}") == [(1,)]  # a retry would have hit a duplicate key


def test_a_refused_password_is_not_retried_until_the_deadline(pg, clean_env):
    clean_env.setenv("DATABASE_URL", pg.url.replace(f":{pg.password}@", ":not-the-password@"))
    outcome = db_utils.execute_with_pool_connection(select_one, backoff=0.001)
    assert (outcome["status"], outcome["attempts"]) == ("error", 1)
    assert "authentication failed" in outcome["message"]
