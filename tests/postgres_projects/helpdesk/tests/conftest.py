import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

SCHEMA = Path(__file__).resolve().parents[1] / "helpdesk" / "schema.sql"


@pytest.fixture(scope="session")
def database():
    """Point the app at the CI database (TEST_DATABASE_URL) and create the schema once."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set")
    parts = urlsplit(url)
    os.environ.update(
        HELPDESK_DB_HOST=parts.hostname,
        HELPDESK_DB_PORT=str(parts.port or 5432),
        HELPDESK_DB_NAME=parts.path.lstrip("/"),
        HELPDESK_DB_USER=unquote(parts.username),
        HELPDESK_DB_PASSWORD=unquote(parts.password),
    )
    from helpdesk.db import get_db_connection

    conn = get_db_connection()
    with conn, conn.cursor() as cur:
        cur.execute(SCHEMA.read_text())
    conn.close()


@pytest.fixture(autouse=True)
def clean_tables(database):
    from helpdesk.db import get_db_connection

    conn = get_db_connection()
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE comments, tickets RESTART IDENTITY")
    conn.close()
