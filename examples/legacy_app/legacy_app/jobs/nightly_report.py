"""Nightly sales report: read orders from PostgreSQL, aggregate, store the result in the local report
database (SQLite) where the back-office dashboard reads it."""

import datetime
import logging
import os
import sqlite3

from legacy_app import analytics, cache
from legacy_app.db import fetch_all, get_postgres_connection

log = logging.getLogger(__name__)

ORDER_LINES_SQL = """
    SELECT o.user_id, u.name, o.id AS order_id, i.quantity, i.price_cents
    FROM orders o
    JOIN users u ON u.id = o.user_id
    JOIN order_items i ON i.order_id = o.id
    WHERE o.status <> 'cancelled'
    ORDER BY o.id, i.sku
"""


def report_path():
    return os.environ.get("REPORT_DB_PATH") or cache.cache_path()


def load_order_lines():
    conn = get_postgres_connection()
    if conn is None:
        raise RuntimeError("nightly report: database unavailable")
    try:
        return fetch_all(conn, ORDER_LINES_SQL)
    finally:
        conn.close()


def store(day, summary):
    """Replace the report for ``day`` (ISO date string) in one SQLite transaction."""
    with sqlite3.connect(report_path(), timeout=10) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS daily_report (day TEXT, user_id INTEGER, name TEXT, orders INTEGER, "
            "items INTEGER, total_cents INTEGER, total TEXT, PRIMARY KEY (day, user_id))"
        )
        conn.execute("DELETE FROM daily_report WHERE day = ?", (day,))
        conn.executemany(
            "INSERT INTO daily_report VALUES (:day, :user_id, :name, :orders, :items, :total_cents, :total)",
            [dict(row, day=day) for row in summary],
        )


def read(day):
    """The stored report for ``day``, biggest spender first ([] if there is none)."""
    conn = sqlite3.connect(report_path(), timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT * FROM daily_report WHERE day = ? ORDER BY total_cents DESC, user_id", (day,)
        ).fetchall()
        return [dict(row) for row in rows]
    except sqlite3.OperationalError:
        # the table does not exist before the first run
        return []
    finally:
        conn.close()


def run(day=None):
    day = day or datetime.date.today().isoformat()
    summary = analytics.summarize_orders(load_order_lines())
    store(day, summary)
    log.info("nightly report for %s: %d customers", day, len(summary))
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run()
