"""Shared helpers for the db_utils.sqlite tests (not a test module itself: no test functions)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from db_utils import sqlite as pooled


def figures(path: Path | str) -> dict[str, Any]:
    """The stats of the default-options pool for ``path``."""
    figures: dict[str, Any] = pooled.pool_figures()["databases"][str(path)]
    return figures


def make_db(path: Path, rows: int = 0) -> Path:
    """A file database with table t(id, name) holding ``rows`` rows, created with plain sqlite3."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO t (name) VALUES (?)", [(f"n{i}",) for i in range(rows)])
    conn.commit()
    conn.close()
    return path


def raw_of(conn: Any) -> sqlite3.Connection:
    """The pooled raw connection behind a proxy (tests only: proves identity of reuse)."""
    raw = conn._raw
    assert isinstance(raw, sqlite3.Connection)
    return raw
