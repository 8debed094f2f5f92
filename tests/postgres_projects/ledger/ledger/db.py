import os

import psycopg2 as psycopg

# libpq keyword -> environment variable. Unset variables fall back to libpq's own defaults.
ENVIRONMENT = {
    "host": "LEDGER_PGHOST",
    "port": "LEDGER_PGPORT",
    "dbname": "LEDGER_PGDATABASE",
    "user": "LEDGER_PGUSER",
    "password": "LEDGER_PGPASSWORD",
}


def connect(**kwargs):
    """psycopg.connect with the ledger's settings from the environment; keyword arguments win."""
    kw = {key: os.environ[var] for key, var in ENVIRONMENT.items() if var in os.environ}
    kw.setdefault("application_name", "ledger")
    kw.update(kwargs)
    return psycopg.connect(**kw)
