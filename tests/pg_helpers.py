"""Small questions the PostgreSQL tests ask of a connection or of the pool."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

import db_utils
from db_utils import PooledConnection
from db_utils.postgres.fair_queue import FairQueuePool


def backend_pid(conn: Any) -> int:
    """The server process behind ``conn``: equal pids mean the same pooled connection was reused."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])


def present(conn: PooledConnection | None) -> PooledConnection:
    """What ``get_postgres_connection()`` returned, where the test needs a connection: None fails here."""
    assert conn is not None, "get_postgres_connection() returned None (it logged why)"
    return conn


def fair_pool(engine: Engine) -> FairQueuePool:
    """The pool db_utils gives every PostgreSQL engine: its size(), checkedin(), waiting()... are typed."""
    assert isinstance(engine.pool, FairQueuePool)
    return engine.pool


def checked_out() -> int:
    """Connections checked out of the (single) PostgreSQL pool right now."""
    (only,) = db_utils.pool_status()["postgres"].values()
    return int(only["checked_out"])


def terminate_and_wait(server: Any) -> int:
    """``pg_terminate_backend`` every other client backend of ``server`` and wait until each has exited
    (PostgreSQL 14+'s timeout argument), so its socket is closed by the time this returns."""
    rows = server.query(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = %s "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        (server.database,),
    )
    return len(rows)
