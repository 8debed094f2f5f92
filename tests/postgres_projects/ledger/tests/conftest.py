import os
from urllib.parse import unquote, urlsplit

import pytest


@pytest.fixture(scope="session", autouse=True)
def ledger_database():
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set")
    parts = urlsplit(url)
    os.environ["LEDGER_PGHOST"] = parts.hostname
    os.environ["LEDGER_PGPORT"] = str(parts.port)
    os.environ["LEDGER_PGDATABASE"] = parts.path[1:]
    os.environ["LEDGER_PGUSER"] = unquote(parts.username)
    os.environ["LEDGER_PGPASSWORD"] = unquote(parts.password)
    from ledger import accounts

    accounts.migrate()


@pytest.fixture(autouse=True)
def empty_ledger(ledger_database):
    from ledger import db

    conn = db.connect()
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE entries, accounts")
    conn.close()
