import os
import uuid

import pytest


@pytest.fixture(scope="session", autouse=True)
def control_database():
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set")
    os.environ["TENANTS_DSN"] = url
    from tenants.db import get_connection

    conn = get_connection()
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS tenants (name text PRIMARY KEY)")
    conn.close()


@pytest.fixture
def scratch_database():
    """A throwaway database for one test, created and dropped around it with the app's own helper."""
    from tenants.db import get_connection

    name = f"scratch_{uuid.uuid4().hex[:12]}"
    conn = get_connection()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    yield name
    conn = get_connection()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE "{name}"')
    conn.close()


@pytest.fixture
def tenant():
    from tenants import db

    name = f"tenant_{uuid.uuid4().hex[:12]}"
    db.provision(name)
    yield name
    if name in db.tenant_names():
        db.offboard(name)
