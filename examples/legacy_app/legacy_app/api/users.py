"""User handlers. Each handler opens its own connection and closes it in ``finally``."""

import logging

import psycopg2

from legacy_app.db import fetch_all, get_postgres_connection

log = logging.getLogger(__name__)


class DuplicateEmail(Exception):
    """Another user already has this email address."""


def get_user(user_id):
    """The user as a dict, or None if there is no such user or the database is down."""
    conn = get_postgres_connection()
    if not conn:
        return None
    try:
        cur = conn.cursor()
        cur.execute("SELECT id, name, email FROM users WHERE id = %s", (user_id,))
        row = cur.fetchone()
        cur.close()
        if row is None:
            return None
        return {"id": row[0], "name": row[1], "email": row[2]}
    finally:
        conn.close()


def create_user(name, email):
    """Insert a user and return its id; None if the database is down.

    ``with conn:`` commits when the block succeeds and rolls back when it raises. It does NOT close the
    connection (psycopg2 semantics), hence the finally.
    """
    conn = get_postgres_connection()
    if conn is None:
        return None
    try:
        with conn:
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO users (name, email) VALUES (%s, %s) RETURNING id",
                    (name, email.strip().lower()),
                )
                return cur.fetchone()[0]
    except psycopg2.IntegrityError:
        raise DuplicateEmail(email)
    finally:
        conn.close()


def update_email(user_id, new_email):
    """Change a user's email. True if changed, False if there is no such user.

    Explicit commit/rollback, the way the original author liked it.
    """
    conn = get_postgres_connection()
    if not conn:
        return False
    try:
        cur = conn.cursor()
        cur.execute("UPDATE users SET email = %s WHERE id = %s", (new_email.strip().lower(), user_id))
        if cur.rowcount != 1:
            conn.rollback()
            return False
        cur.execute(
            "INSERT INTO audit_log (event, detail) VALUES (%s, %s)",
            ("email-changed", "user %s" % user_id),
        )
        conn.commit()
        return True
    except psycopg2.IntegrityError:
        conn.rollback()
        raise DuplicateEmail(new_email)
    finally:
        conn.close()


def list_users(limit=100):
    """All users, oldest first. The connection is handed to the shared query helper."""
    conn = get_postgres_connection()
    if not conn:
        return []
    try:
        return fetch_all(conn, "SELECT id, name, email FROM users ORDER BY id LIMIT %s", (limit,))
    finally:
        conn.close()


def user_count():
    """How many users signed up, for the dashboard; None when anything goes wrong (it shows a dash)."""
    conn = get_postgres_connection()
    if conn is None:
        return None
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM users")
        return cur.fetchone()[0]
    except Exception:
        return None
    finally:
        conn.close()
