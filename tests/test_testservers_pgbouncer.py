"""testservers.pgbouncer: a real PgBouncer in front of the test PostgreSQL, as the PgBouncer tests use it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg2
import pytest

import db_utils
from testservers.pgbouncer import PgBouncerServer, launch_pgbouncer
from testservers.postgres import PostgresServer

CLIENTS = 40


def test_queries_reach_postgres_through_pgbouncer_with_scram(pgbouncer: PgBouncerServer) -> None:
    conn = pgbouncer.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, current_database(), inet_server_port()")
            row = cur.fetchone()
    finally:
        conn.close()
    assert row == (pgbouncer.user, pgbouncer.postgres.database, pgbouncer.postgres.port)
    assert pgbouncer.port != pgbouncer.postgres.port
    pools = [p for p in pgbouncer.admin("SHOW POOLS") if p["database"] == pgbouncer.database]
    assert [(p["user"], p["pool_mode"]) for p in pools] == [(pgbouncer.user, "transaction")]


def test_a_wrong_password_is_refused_by_pgbouncer(pgbouncer: PgBouncerServer) -> None:
    wrong = pgbouncer.dsn.replace(pgbouncer.password, "not-the-password")
    with pytest.raises(psycopg2.OperationalError, match="SASL authentication failed"):
        psycopg2.connect(wrong)


def test_the_shim_works_through_pgbouncer(pgbouncer: PgBouncerServer, clean_env: pytest.MonkeyPatch) -> None:
    db_utils.dispose_pools()
    try:
        with db_utils.get_pooled_connection(pgbouncer.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone() == (pgbouncer.user,)
        for name, value in pgbouncer.env().items():
            clean_env.setenv(name, value)
        legacy = db_utils.get_postgres_connection()
        assert legacy is not None
        with legacy.cursor() as cur:
            cur.execute("SELECT inet_server_port()")
            assert cur.fetchone() == (pgbouncer.postgres.port,)
        legacy.close()
    finally:
        db_utils.dispose_pools()


def test_transaction_mode_multiplexes_many_clients_onto_the_pool(pgbouncer: PgBouncerServer) -> None:
    """40 connected clients, each running transactions at the same time, share <= 20 server connections."""
    clients = [pgbouncer.connect() for _ in range(CLIENTS)]
    start = threading.Barrier(CLIENTS)
    pids: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()  # guards pids and errors

    def work(conn: object) -> None:
        try:
            start.wait(timeout=60)
            for _ in range(5):
                with conn.cursor() as cur:  # type: ignore[attr-defined]
                    cur.execute("SELECT pg_backend_pid() FROM pg_sleep(0.01)")
                    pid = cur.fetchone()[0]
                conn.commit()  # type: ignore[attr-defined]
                with lock:
                    pids.append(pid)
        except BaseException as error:
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=work, args=(conn,)) for conn in clients]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        assert len(pids) == CLIENTS * 5
        assert len(set(pids)) <= pgbouncer.default_pool_size  # every server connection that ever served
        assert pgbouncer.server_connections() <= pgbouncer.default_pool_size
        (pool,) = [p for p in pgbouncer.admin("SHOW POOLS") if p["database"] == pgbouncer.database]
        assert pool["cl_active"] + pool["cl_waiting"] == CLIENTS  # all still connected
    finally:
        for conn in clients:
            conn.close()


def test_session_mode_gives_a_client_one_server_connection(
    pgbouncer_factory: Callable[..., PgBouncerServer],
) -> None:
    server = pgbouncer_factory(pool_mode="session", default_pool_size=2)
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET search_path TO kept_for_the_session, public")
            cur.execute("SELECT pg_backend_pid()")
            first = cur.fetchone()[0]
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid(), current_setting('search_path')")
            assert cur.fetchone() == (first, "kept_for_the_session, public")
    finally:
        conn.close()


def test_max_client_conn_is_enforced(pgbouncer_factory: Callable[..., PgBouncerServer]) -> None:
    server = pgbouncer_factory(max_client_conn=2)
    held = [server.connect(), server.connect()]
    try:
        with pytest.raises(psycopg2.OperationalError, match="max_client_conn"):
            server.connect()
    finally:
        for conn in held:
            conn.close()


def test_stop_ends_the_process_its_server_connections_its_role_and_its_files(
    postgres: PostgresServer, pgbouncer_binary: Path
) -> None:
    server = launch_pgbouncer(postgres)
    conn = server.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE owned_by_the_bouncer_role (id int)")
    conn.commit()
    assert server.server_connections() >= 1
    assert server.password not in repr(server)

    server.stop()

    assert server.process.returncode is not None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=5).close()
    assert server.server_connections() == 0
    assert postgres.query("SELECT count(*) FROM pg_roles WHERE rolname = %s", (server.user,)) == [(0,)]
    assert postgres.query("SELECT to_regclass('owned_by_the_bouncer_role')") == [(None,)]
    assert not server.tmpdir.exists()
    server.stop()  # idempotent
    conn.close()


def test_a_bad_setting_fails_with_pgbouncer_own_words_and_leaves_nothing(
    postgres: PostgresServer, pgbouncer_binary: Path, made_temp_dirs: list[str]
) -> None:
    roles_before = postgres.query("SELECT rolname FROM pg_roles ORDER BY 1")
    made = made_temp_dirs
    with pytest.raises(RuntimeError, match=r"(?s)pgbouncer exited .*pool_mode"):
        launch_pgbouncer(postgres, pool_mode="no-such-mode")
    assert len(made) == 1
    assert not Path(made[0]).exists()
    assert postgres.query("SELECT rolname FROM pg_roles ORDER BY 1") == roles_before
