import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def sales_dsn():
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set")
    os.environ["SALES_DSN"] = url
    from salesreports import reports

    reports.setup()
    return url


@pytest.fixture(autouse=True)
def no_sales(sales_dsn):
    from salesreports.db import connect

    conn = connect()
    conn.cursor().execute("TRUNCATE sales RESTART IDENTITY")
    conn.commit()
    conn.close()
