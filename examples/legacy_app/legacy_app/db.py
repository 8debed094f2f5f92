"""Database access for the order service.

History: this module started as a copy-paste from the ops wiki. Every caller opens a brand-new
PostgreSQL connection per request and is responsible for closing it (most do). Settings come from the
environment on every call, so a restarted database with new credentials is picked up without a deploy.
"""

import logging
import os

import psycopg2

log = logging.getLogger(__name__)


def _settings():
    return {
        "host": os.environ.get("POSTGRES_HOST", "localhost"),
        "port": int(os.environ.get("POSTGRES_PORT", "5432")),
        "dbname": os.environ.get("POSTGRES_DB", "shop"),
        "user": os.environ.get("POSTGRES_USER", "shop"),
        "password": os.environ.get("POSTGRES_PASSWORD", ""),
    }


def get_postgres_connection():
    """Return a new psycopg2 connection, or None if the database cannot be reached.

    Callers check for None instead of catching exceptions (the handlers predate our error middleware).
    The error is logged with host, port, database and user so on-call can tell which database is down;
    the password is never logged.
    """
    settings = _settings()
    try:
        return psycopg2.connect(connect_timeout=5, **settings)
    except psycopg2.Error as e:
        message = str(e).strip()
        if settings["password"]:
            message = message.replace(settings["password"], "***")
        log.error(
            "could not connect to postgres %s:%s/%s as %s: %s",
            settings["host"],
            settings["port"],
            settings["dbname"],
            settings["user"],
            message,
        )
        return None


def fetch_all(conn, sql, params=None):
    """Run a query on a connection the caller owns and return all rows as dicts."""
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        columns = [col[0] for col in cur.description]
        return [dict(zip(columns, row)) for row in cur.fetchall()]
    finally:
        cur.close()


def fetch_one(conn, sql, params=None):
    """Like fetch_all, for queries that return at most one row (None if there is none)."""
    rows = fetch_all(conn, sql, params)
    if rows:
        return rows[0]
    return None
