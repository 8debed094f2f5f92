"""Database access for the helpdesk service."""

import os

import psycopg2


def get_db_connection():
    """Open a connection to the helpdesk database.

    Every stage (laptop, CI, production) sets the HELPDESK_DB_* variables; the defaults match the
    docker-compose file. We fail fast when the database is unreachable instead of hanging a worker.
    """
    return psycopg2.connect(
        host=os.environ.get("HELPDESK_DB_HOST", "localhost"),
        port=os.environ.get("HELPDESK_DB_PORT", "5432"),
        dbname=os.environ.get("HELPDESK_DB_NAME", "helpdesk"),
        user=os.environ.get("HELPDESK_DB_USER", "helpdesk"),
        password=os.environ.get("HELPDESK_DB_PASSWORD"),
        connect_timeout=5,
        sslmode="prefer",
    )
