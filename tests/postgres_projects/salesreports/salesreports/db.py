import logging
import os

import psycopg2
import psycopg2.extras

# Compliance: every statement the reporting service runs goes to this logger (shipped to the SIEM).
sql_audit = logging.getLogger("salesreports.sql")


def connect():
    conn = psycopg2.connect(os.environ["SALES_DSN"], connection_factory=psycopg2.extras.LoggingConnection)
    conn.initialize(sql_audit)
    return conn
