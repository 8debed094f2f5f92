"""A small key/value cache in a local SQLite file (shared by all worker processes on a host).

Values are stored as JSON with an expiry timestamp. Every call opens the file anew: the cache was added
in a hurry during the 2016 sale and nobody has touched it since.
"""

import json
import os
import sqlite3
import time
from sqlite3 import connect

_CREATE = "CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL)"


def cache_path():
    return os.environ.get("CACHE_DB_PATH", "/tmp/legacy_app_cache.db")


def _open():
    conn = connect(cache_path(), timeout=10)
    conn.row_factory = sqlite3.Row
    conn.execute(_CREATE)
    return conn


def get(key, default=None):
    """The cached value for ``key``, or ``default`` if it is missing or expired."""
    conn = _open()
    try:
        row = conn.execute("SELECT value, expires_at FROM cache WHERE key = ?", (key,)).fetchone()
    finally:
        conn.close()
    if row is None:
        return default
    if row["expires_at"] is not None and row["expires_at"] < time.time():
        return default
    return json.loads(row["value"])


def set(key, value, ttl=None):
    """Store ``value`` (anything JSON can encode) under ``key``; ``ttl`` in seconds, None = forever."""
    expires_at = time.time() + ttl if ttl is not None else None
    with sqlite3.connect(cache_path(), timeout=10) as conn:
        conn.execute(_CREATE)
        conn.execute(
            "INSERT OR REPLACE INTO cache (key, value, expires_at) VALUES (?, ?, ?)",
            (key, json.dumps(value), expires_at),
        )


def delete(key):
    with connect(cache_path(), timeout=10) as conn:
        conn.execute(_CREATE)
        conn.execute("DELETE FROM cache WHERE key = ?", (key,))


def purge_expired():
    """Delete expired entries; returns how many were removed."""
    conn = _open()
    try:
        cur = conn.execute(
            "DELETE FROM cache WHERE expires_at IS NOT NULL AND expires_at < ?", (time.time(),)
        )
        conn.commit()
        return cur.rowcount
    finally:
        conn.close()


def keys():
    """All live keys, sorted."""
    conn = _open()
    try:
        rows = conn.execute(
            "SELECT key FROM cache WHERE expires_at IS NULL OR expires_at >= ? ORDER BY key", (time.time(),)
        ).fetchall()
        return [row["key"] for row in rows]
    finally:
        conn.close()
