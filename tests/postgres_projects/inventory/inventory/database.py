"""Connection settings come from .env in development and from the real environment in production
(load_dotenv never overrides a variable that is already set)."""

import logging
import os

import psycopg2
from dotenv import load_dotenv

load_dotenv()

log = logging.getLogger(__name__)


def open_connection():
    """A new connection, or None when the database cannot be reached (the caller decides what to show)."""
    try:
        return psycopg2.connect(
            host=os.getenv("DB_HOSTNAME", "localhost"),
            port=int(os.getenv("DB_PORTNUMBER", "5432")),
            database=os.getenv("POSTGRES_DATABASE", "inventory"),
            user=os.getenv("POSTGRES_USERNAME", "inventory"),
            password=os.getenv("POSTGRES_SECRET", ""),
        )
    except psycopg2.OperationalError:
        log.exception("inventory database unreachable")
        return None
