import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Write the .env the app reads, from the CI database URL, before anything imports the app."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return
    parts = urlsplit(url)
    settings = {
        "DB_HOSTNAME": parts.hostname,
        "DB_PORTNUMBER": parts.port or 5432,
        "POSTGRES_DATABASE": parts.path.lstrip("/"),
        "POSTGRES_USERNAME": unquote(parts.username),
        "POSTGRES_SECRET": unquote(parts.password),
    }
    (PROJECT_ROOT / ".env").write_text("".join(f"{key}={value}\n" for key, value in settings.items()))


@pytest.fixture(scope="session")
def tables():
    if not os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("TEST_DATABASE_URL is not set")
    from inventory import stock

    stock.create_tables()


@pytest.fixture(autouse=True)
def empty_warehouse(tables):
    from inventory.database import open_connection

    conn = open_connection()
    conn.cursor().execute("TRUNCATE stock, movements RESTART IDENTITY")
    conn.commit()
    conn.close()
