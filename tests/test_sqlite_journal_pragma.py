"""``PRAGMA journal_mode`` set to the mode the database already has keeps the connection reusable.

The helper that runs ``PRAGMA journal_mode = WAL`` on every connection of a database already in WAL used
to make every connection dirty (no reuse at all); setting another mode still does what it did. Every
expected row is what plain sqlite3 returns for the same statement on the same file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import db_utils
from db_utils import sqlite as pooled
from db_utils.sqlite.statements import analyze
from tests.test_sqlite_support import make_db, raw_of

pytestmark = pytest.mark.usefixtures("sqlite_pools")


def stats(path: Path | str, options: str = "") -> dict[str, Any]:
    """The pool figures of ``path`` as db_utils.pool_status() reports them."""
    name = f"{path} [{options}]" if options else str(path)
    figures: dict[str, Any] = db_utils.pool_status()["sqlite"]["databases"][name]
    return figures


def plain_rows(path: Path, sql: str) -> list[Any]:
    """What sqlite3 itself returns for ``sql`` on ``path``."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def plain_mode(path: Path) -> str:
    (row,) = plain_rows(path, "PRAGMA journal_mode")
    return str(row[0])


@pytest.fixture
def wal_db(tmp_path: Path) -> Path:
    """A file database already in WAL (switched by plain sqlite3, not by the pool)."""
    db = make_db(tmp_path / "wal.db", rows=3)
    assert plain_rows(db, "PRAGMA journal_mode = WAL") == [("wal",)]
    return db


def helper(path: Path | str) -> Any:
    """The legacy helper: every connection asks for WAL and foreign keys."""
    conn = pooled.connect(path)
    row = conn.execute("PRAGMA journal_mode=WAL").fetchone()
    conn.execute("PRAGMA foreign_keys=ON")
    return conn, row


@pytest.mark.parametrize("fresh", [True, False], ids=["pool-switches-to-wal", "already-wal"])
def test_the_wal_helper_reuses_its_connection(tmp_path: Path, fresh: bool) -> None:
    db = tmp_path / "helper.db" if fresh else make_db(tmp_path / "helper.db", rows=3)
    if not fresh:
        plain_rows(db, "PRAGMA journal_mode = WAL")
    raws = set()
    for i in range(20):
        conn, row = helper(db)
        assert row == ("wal",)
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO t (name) VALUES (?)", (f"h{i}",))
        conn.commit()
        assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
        raws.add(id(raw_of(conn)))
        conn.close()
    figures = stats(db)
    assert (figures["checkouts"], figures["reuses"], figures["discarded_dirty"]) == (20, 19, 0)
    assert figures["connections_created"] == 1
    assert len(raws) == 1
    assert plain_rows(db, "PRAGMA journal_mode = WAL") == [("wal",)]  # what the helper was given
    # foreign_keys was still restored on every return: the next borrower gets a fresh connection's value.
    conn = pooled.connect(db)
    assert conn.execute("PRAGMA foreign_keys").fetchone() == tuple(plain_rows(db, "PRAGMA foreign_keys")[0])
    conn.close()


@pytest.mark.parametrize(
    "sql",
    [
        "PRAGMA journal_mode=WAL",
        "pragma Journal_Mode = wal",
        "PRAGMA journal_mode = 'wal'",
        'PRAGMA journal_mode = "WAL"',
        "PRAGMA journal_mode(wal)",
        "PRAGMA main.journal_mode = 'wal'",
        "PRAGMA main . journal_mode=WAL;",
        "/* every connection */ PRAGMA journal_mode = [wal] -- again",
    ],
)
def test_every_spelling_of_setting_the_current_mode_is_clean(wal_db: Path, sql: str) -> None:
    conn = pooled.connect(wal_db)
    raw = raw_of(conn)
    assert conn.execute(sql).fetchall() == plain_rows(wal_db, sql)
    conn.close()
    again = pooled.connect(wal_db)
    assert raw_of(again) is raw
    again.close()
    assert stats(wal_db)["discarded_dirty"] == 0


def test_the_row_can_be_read_through_a_cursor_and_a_script_too(wal_db: Path) -> None:
    conn = pooled.connect(wal_db)
    cur = conn.cursor()
    assert cur.execute("PRAGMA journal_mode = WAL").fetchall() == [("wal",)]
    conn.executescript("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
    conn.close()
    figures = stats(wal_db)
    assert (figures["idle"], figures["discarded_dirty"]) == (1, 0)


@pytest.mark.parametrize("sql", ["PRAGMA journal_mode", "PRAGMA main.journal_mode", "pragma JOURNAL_MODE;"])
def test_reading_the_mode_is_clean(wal_db: Path, sql: str) -> None:
    conn = pooled.connect(wal_db)
    raw = raw_of(conn)
    assert conn.execute(sql).fetchall() == plain_rows(wal_db, sql) == [("wal",)]
    conn.close()
    again = pooled.connect(wal_db)
    assert raw_of(again) is raw
    again.close()
    assert stats(wal_db)["discarded_dirty"] == 0


def test_switching_a_pool_database_from_wal_to_delete_behaves_as_before(tmp_path: Path) -> None:
    db = make_db(tmp_path / "back.db", rows=2)
    idle = pooled.connect(db)  # the pool switches the file to WAL
    assert plain_mode(db) == "wal"
    conn = pooled.connect(db)
    idle.close()
    assert stats(db)["idle"] == 1
    assert conn.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    assert stats(db)["idle"] == 0  # idle connections closed so the change could take effect
    conn.close()
    figures = stats(db)
    assert (figures["discarded_dirty"], figures["idle"]) == (1, 0)
    assert plain_mode(db) == "delete"
    for _ in range(3):
        pooled.connect(db).close()
    assert plain_mode(db) == "delete"  # the caller's choice sticks: never switched back


def test_the_kept_delete_mode_stops_a_pending_switch(tmp_path: Path) -> None:
    """A helper confirming DELETE on a file still in DELETE keeps its connection, and its choice still
    wins over the pool's one-off WAL switch, which here could not run yet (another process's lock)."""
    db = make_db(tmp_path / "pending.db", rows=1)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # readers may read; nobody may switch the journal mode
    first = pooled.connect(db)
    assert stats(db)["wal_switched"] is False
    assert first.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    other.execute("ROLLBACK")
    other.close()
    second = pooled.connect(db)  # a new connection: the pool would retry the switch on it
    first.close()
    second.close()
    assert plain_mode(db) == "delete"
    figures = stats(db)
    assert (figures["discarded_dirty"], figures["wal_switched"]) == (0, False)
    pooled.connect(db).close()
    assert stats(db)["reuses"] == 1


@pytest.mark.parametrize(
    "sql",
    [
        "PRAGMA journal_mode = TRUNCATE",  # per connection: the next borrower would inherit it
        "PRAGMA main.journal_mode = PERSIST",
        "PRAGMA journal_mode = MEMORY",
        "PRAGMA temp.journal_mode = DELETE",  # another schema: not what is read back
        "PRAGMA journal_mode = 'del'",  # SQLite takes a prefix of a name: not certain, so dirty
    ],
)
def test_any_other_mode_still_makes_the_connection_dirty(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, sql: str
) -> None:
    clean_env.setenv("SQLITE_POOL_WAL", "0")
    db = make_db(tmp_path / "other.db", rows=1)
    conn = pooled.connect(db)
    assert conn.execute(sql).fetchall() == plain_rows(db, sql)
    conn.close()
    assert stats(db)["discarded_dirty"] == 1


def test_a_mode_that_cannot_be_read_counts_as_a_change(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SQLITE_POOL_WAL", "0")
    db = make_db(tmp_path / "locked.db", rows=1)
    other = sqlite3.connect(db, isolation_level=None)
    conn = pooled.connect(db, timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        other.execute("ROLLBACK")
        other.close()
    conn.close()
    assert stats(db, "timeout=0")["discarded_dirty"] == 1


@pytest.mark.parametrize(
    ("sql", "modes"),
    [
        ("PRAGMA journal_mode=WAL", ("wal",)),
        ("PRAGMA main.journal_mode = 'Wal'", ("wal",)),
        ("PRAGMA journal_mode = `delete`", ("delete",)),
        ("PRAGMA main.journal_mode = truncate", ("truncate",)),
        ("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = 1", ("wal",)),
        ("PRAGMA journal_mode = WAL; PRAGMA main.journal_mode = DELETE", ("wal", "delete")),
        # An unqualified write also sets an open temp database's mode: only WAL and DELETE leave it.
        ("PRAGMA journal_mode = TRUNCATE", ()),
        ("PRAGMA temp.journal_mode = WAL", ()),
        ("PRAGMA journal_mode = w", ()),
        ("PRAGMA journal_mode = 'wa''l'", ()),
        ("PRAGMA journal_mode = WAL; ATTACH ':memory:' AS x", ()),
        ("PRAGMA journal_mode = WAL; PRAGMA writable_schema = 1", ()),
    ],
)
def test_which_journal_mode_writes_the_proxy_may_check(sql: str, modes: tuple[str, ...]) -> None:
    analysis = analyze(sql)
    assert analysis.journal_modes == modes
    assert analysis.reason  # statically still dirty: only the connection's current mode can clear it


@pytest.mark.parametrize(
    "sql",
    ["SELECT 'wal'", "CREATE TABLE x (a DEFAULT 'temp')", "INSERT INTO t VALUES ('PRAGMA journal_mode=off')"],
)
def test_quoted_words_are_never_read_as_keywords(sql: str) -> None:
    assert not analyze(sql).reason
