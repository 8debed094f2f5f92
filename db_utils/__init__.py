"""poolshift's runtime shim: pooled PostgreSQL connections behind the API legacy code is migrated to.

Only the public API is re-exported here; ``db_utils.sqlite`` and ``db_utils.http`` are imported on
their own so that code using one kind of pool never pays for the others.
"""

from db_utils.config import ConfigError
from db_utils.postgres.api import (
    execute_with_pool,
    execute_with_pool_connection,
    get_pooled_connection,
    health_check,
)
from db_utils.postgres.instrument import PoolTimeoutError
from db_utils.postgres.legacy import get_postgres_connection
from db_utils.postgres.pgbouncer import SessionStateNotSupported
from db_utils.postgres.proxy import PooledConnection
from db_utils.postgres.registry import dispose_pools, get_connection_pool
from db_utils.stats import pool_alerts, pool_status, pool_status_line

__all__ = [
    "ConfigError",
    "PoolTimeoutError",
    "PooledConnection",
    "SessionStateNotSupported",
    "dispose_pools",
    "execute_with_pool",
    "execute_with_pool_connection",
    "get_connection_pool",
    "get_pooled_connection",
    "get_postgres_connection",
    "health_check",
    "pool_alerts",
    "pool_status",
    "pool_status_line",
]
