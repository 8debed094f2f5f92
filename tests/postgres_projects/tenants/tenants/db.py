import os

import psycopg2
from psycopg2 import sql

TENANT_SCHEMA = """
CREATE TABLE notes (id serial PRIMARY KEY, author text NOT NULL, body text NOT NULL);
"""


def get_connection(dbname=None):
    """A connection to the control database, or to one tenant's database when ``dbname`` is given."""
    params = {"dbname": dbname} if dbname else {}
    return psycopg2.connect(os.environ["TENANTS_DSN"], **params)


def provision(tenant):
    """Create the tenant's database and its tables. CREATE DATABASE cannot run in a transaction."""
    conn = get_connection()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(tenant)))
            cur.execute("INSERT INTO tenants (name) VALUES (%s)", (tenant,))
    finally:
        conn.close()
    conn = get_connection(tenant)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(TENANT_SCHEMA)
    finally:
        conn.close()


def offboard(tenant):
    conn = get_connection()
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(tenant)))
            cur.execute("DELETE FROM tenants WHERE name = %s", (tenant,))
    finally:
        conn.close()


def tenant_names():
    conn = get_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT t.name FROM tenants t JOIN pg_database d ON d.datname = t.name ORDER BY 1")
            return [name for (name,) in cur.fetchall()]
    finally:
        conn.close()
