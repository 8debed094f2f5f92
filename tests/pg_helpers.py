"""Small questions the PostgreSQL tests ask of a connection or of the pool."""

from __future__ import annotations

from typing import Any

import db_utils


def backend_pid(conn: Any) -> int:
    """The server process behind ``conn``: equal pids mean the same pooled connection was reused."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])


def checked_out() -> int:
    """Connections checked out of the (single) PostgreSQL pool right now."""
    (only,) = db_utils.pool_status()["postgres"].values()
    return int(only["checked_out"])
