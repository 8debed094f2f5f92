"""``get_postgres_connection()``: the drop-in for the home-grown helper legacy code calls everywhere.

Contract kept from the typical helper: parameters from the environment (``DATABASE_URL``, else each of
``POSTGRES_*``, else libpq ``PG*``, else localhost/5432/postgres/postgres; see
:func:`db_utils.postgres.settings.default_database_url`), and ``None`` instead of an exception when no
connection can be had (the error is logged, without the password). What changes is invisible to the
caller: the connection comes from a pool, and ``close()`` returns it there after rolling back uncommitted
work, which is exactly what closing a real psycopg2 connection does to that work.
"""

from __future__ import annotations

import logging
import sys

from db_utils.config import ConfigError
from db_utils.postgres.api import scrub_password
from db_utils.postgres.lending import lend
from db_utils.postgres.proxy import PooledConnection
from db_utils.postgres.registry import pool_for

logger = logging.getLogger("db_utils.legacy")


def get_postgres_connection() -> PooledConnection | None:
    """A pooled, psycopg2-compatible connection, or ``None`` if none can be obtained (error logged)."""
    try:
        engine, state = pool_for(None)
        return lend(engine, state, sys._getframe(1))
    except ConfigError as error:
        # Configuration errors already name the variable and never contain the password.
        logger.error("get_postgres_connection: invalid configuration: %s", error)
    except Exception as error:
        logger.error(
            "get_postgres_connection: could not get a connection: %s: %s",
            type(error).__name__,
            scrub_password(str(error).strip(), None),
        )
    return None
