"""The /health endpoint the load balancer polls every few seconds."""

import json
import os
import socket
import urllib.error
import urllib.request

from legacy_app import __version__, db


def check_database():
    """True if PostgreSQL answers a trivial query."""
    conn = db.get_postgres_connection()
    if conn is None:
        return False
    try:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SELECT 1")
        return cur.fetchone()[0] == 1
    except Exception:
        return False
    finally:
        conn.close()


def check_service():
    """True if the catalogue service says it is ok."""
    url = os.environ.get("SERVICE_URL", "http://127.0.0.1:8080").rstrip("/") + "/health"
    try:
        resp = urllib.request.urlopen(url, timeout=2)
        try:
            return json.loads(resp.read()).get("status") == "ok"
        finally:
            resp.close()
    except (urllib.error.URLError, socket.timeout, ValueError):
        return False


def health():
    """The health document: overall status plus one entry per dependency."""
    checks = {"database": check_database(), "catalogue": check_service()}
    return {
        "status": "ok" if all(checks.values()) else "degraded",
        "version": __version__,
        "checks": {name: ("up" if up else "down") for name, up in checks.items()},
    }
