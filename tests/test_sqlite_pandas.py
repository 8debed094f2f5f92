"""pandas on a pooled SQLite connection: the same frames as on sqlite3's, and no warning.

pandas' ``read_sql``/``to_sql`` take the sqlite3 path only for ``isinstance(con, sqlite3.Connection)``
and warn on every call about any other DBAPI connection ("pandas only supports SQLAlchemy connectable");
a project running with ``-W error`` then fails (WranglesPY's suite did). The proxy passes the check.
"""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import pytest

import db_utils.sqlite

pytestmark = pytest.mark.usefixtures("sqlite_pools")

FRAME = pd.DataFrame(
    {"id": [1, 2, 3], "name": ["ada", "bob", "cy"], "joined": ["2024-01-02", "2024-02-03", "2024-03-04"]}
)


def round_trip(connect: Callable[[str], Any], path: Path) -> list[pd.DataFrame]:
    """What data code does with a connection per call: write, append, read back several ways."""
    frames = []
    connection = connect(str(path))
    try:
        FRAME.to_sql("people", connection, index=False, dtype={"id": "INTEGER PRIMARY KEY"})
        FRAME.assign(id=FRAME.id + 10).to_sql(
            "people", connection, index=False, if_exists="append", chunksize=2, method="multi"
        )
        connection.commit()
    finally:
        connection.close()
    connection = connect(str(path))
    try:
        frames.append(pd.read_sql("SELECT * FROM people ORDER BY id", connection, parse_dates=["joined"]))
        frames.append(pd.read_sql_query("SELECT name FROM people WHERE id > ?", connection, params=(10,)))
        frames.extend(pd.read_sql("SELECT id FROM people ORDER BY id", connection, chunksize=4))
        FRAME.to_sql("people", connection, index=False, if_exists="replace")
        frames.append(pd.read_sql("SELECT count(*) AS n FROM people", connection))
    finally:
        connection.close()
    return frames


def test_read_sql_and_to_sql_give_sqlite3s_frames_without_a_warning(tmp_path: Path) -> None:
    expected = round_trip(sqlite3.connect, tmp_path / "plain.db")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pooled = round_trip(db_utils.sqlite.connect, tmp_path / "pooled.db")
    assert len(pooled) == len(expected)
    for got, want in zip(pooled, expected, strict=True):
        pd.testing.assert_frame_equal(got, want)


def test_the_proxy_passes_isinstance_but_not_the_c_type_check(tmp_path: Path) -> None:
    connection: Any = db_utils.sqlite.connect(str(tmp_path / "a.db"))
    try:
        assert isinstance(connection, sqlite3.Connection)
        assert type(connection) is not sqlite3.Connection
        # C code checks the real type and still refuses the proxy (as documented for backup).
        with pytest.raises(TypeError):
            sqlite3.connect(":memory:").backup(connection)
    finally:
        connection.close()
