"""DISCARD ALL must not undo what psycopg2 itself set up when it connected.

psycopg2 parses dates only in ISO style: on a server whose DateStyle is not ISO it runs ``SET DATESTYLE TO
'ISO'`` right after connecting. ``DISCARD ALL`` (run on return when a borrower touched session state)
resets every SET, that one included, so the next borrower would get dates psycopg2 cannot parse, something a
fresh legacy connection never sees.
"""

from __future__ import annotations

import datetime

import pytest

import db_utils

pytestmark = pytest.mark.postgres


def test_dates_still_parse_after_a_session_reset_on_a_non_iso_server(postgres_factory, clean_env):
    server = postgres_factory(max_connections=10, extra_settings={"datestyle": "SQL, DMY"})
    clean_env.setenv("DATABASE_URL", server.url)
    db_utils.dispose_pools()
    try:
        db_utils.get_connection_pool(pool_size=1, max_overflow=0)
        first = db_utils.get_postgres_connection()
        assert first is not None
        with first.cursor() as cur:
            cur.execute("SET search_path TO public")  # session state: DISCARD ALL on return
        first.close()

        second = db_utils.get_postgres_connection()
        assert second is not None
        with second.cursor() as cur:
            cur.execute("SELECT DATE '2026-11-22', current_setting('DateStyle')")
            day, datestyle = cur.fetchone()
        second.close()
        assert day == datetime.date(2026, 11, 22)
        assert datestyle.startswith("ISO")
    finally:
        db_utils.dispose_pools()
