import os
from decimal import Decimal

import psycopg2
import pytest


@pytest.fixture(scope="session")
def dsn():
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set")
    os.environ["CATALOG_DATABASE_DSN"] = url
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE products (sku text PRIMARY KEY, name text NOT NULL, price numeric(10, 2) NOT NULL, "
            "specs jsonb NOT NULL)"
        )
    conn.close()
    return url


@pytest.fixture(autouse=True)
def products(dsn):
    from catalog import export

    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE products")
    conn.close()
    export.add_product("CHAIR-1", "Oak chair", Decimal("79.90"), {"weight_kg": 6.25, "box": [50, 50, 90]})
    export.add_product(
        "DESK-2", "Standing desk", Decimal("399.00"), {"weight_kg": 31.5, "box": [160, 80, 20]}
    )
