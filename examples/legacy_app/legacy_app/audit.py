"""Audit trail. Writes must survive whatever the caller's transaction does, so this module uses its own
autocommit connection for every entry."""

import logging

from legacy_app import db

log = logging.getLogger(__name__)


def record(event, detail=None):
    """Append an audit entry immediately (autocommit). Returns False if the database is down."""
    conn = db.get_postgres_connection()
    if conn is None:
        log.warning("audit entry lost (database down): %s", event)
        return False
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute("INSERT INTO audit_log (event, detail) VALUES (%s, %s)", (event, detail))
        cur.close()
        return True
    finally:
        conn.close()


def recent(limit=20):
    """The newest entries first, as (event, detail) tuples."""
    conn = db.get_postgres_connection()
    if conn is None:
        return []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT event, detail FROM audit_log ORDER BY id DESC LIMIT %s", (limit,))
            return [tuple(row) for row in cur.fetchall()]
    finally:
        conn.close()
