"""The password never shows: reprs, status, health, alerts, log records (at DEBUG) and exceptions."""

from __future__ import annotations

import gc
import logging
import warnings

import psycopg2
import pytest

import db_utils
from db_utils.config import ConfigError

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def pg(pg_pools):
    return pg_pools


def test_password_appears_nowhere(pg, clean_env, caplog):
    password = pg.password
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.pool").setLevel(logging.DEBUG)
    try:
        engine = db_utils.get_connection_pool(pool_size=1, max_overflow=0, timeout=0.1, ping_after=0)
        seen += [repr(engine), str(engine.url), repr(engine.pool)]
        conn = db_utils.get_postgres_connection()
        assert conn is not None
        seen += [repr(conn), str(conn)]
        with pytest.raises(db_utils.PoolTimeoutError) as timeout, db_utils.get_pooled_connection():
            pass
        seen.append(str(timeout.value))
        seen.append(str(db_utils.execute_with_pool_connection(lambda c: None)))
        conn.close()
        with pytest.raises(psycopg2.InterfaceError) as closed:
            conn.cursor()
        seen.append(str(closed.value))
        with pytest.raises(ConfigError) as conflict:
            db_utils.get_connection_pool(pool_size=5)
        seen.append(str(conflict.value))
        pg.terminate_backends()
        with db_utils.get_pooled_connection() as fresh:  # ping fails, connection replaced (logged)
            fresh.cursor().execute("SELECT 1")
        dropped = db_utils.get_postgres_connection()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del dropped
            gc.collect()
        seen += [str(w.message) for w in caught]
        seen += [str(db_utils.pool_status()), db_utils.pool_status_line(), str(db_utils.health_check())]
        seen += [str(db_utils.pool_alerts())]
        wrong = pg.url.replace(f":{pg.port}/", ":1/")
        seen.append(str(db_utils.health_check(wrong)))
        seen.append(str(db_utils.execute_with_pool_connection(lambda c: None, wrong, retries=0)))
        with pytest.raises(psycopg2.OperationalError) as refused, db_utils.get_pooled_connection(wrong):
            pass
        seen.append(str(refused.value))
        clean_env.setenv("DATABASE_URL", pg.url.replace("postgresql+psycopg2", "mysql"))
        db_utils.dispose_pools()
        assert db_utils.get_postgres_connection() is None
        with pytest.raises(ConfigError) as bad_url:
            db_utils.get_connection_pool()
        seen.append(str(bad_url.value))
    finally:
        logging.getLogger("sqlalchemy.pool").setLevel(logging.NOTSET)
    assert caplog.records, "the scenario should have produced log records to inspect"
    replaced = ("pre-ping failed", "closed the connection while it was idle")
    assert any(reason in record.getMessage() for record in caplog.records for reason in replaced)
    for record in caplog.records:
        assert password not in record.getMessage(), record.getMessage()
    for text in seen:
        assert password not in text, text
