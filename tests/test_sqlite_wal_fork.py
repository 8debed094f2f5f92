"""WAL only where safe, concurrent writers without "database is locked", and fork safety."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from db_utils import sqlite as pooled
from db_utils.sqlite.statements import SqlEffect, sql_effect
from tests.test_sqlite_support import figures, make_db, raw_of

pytestmark = pytest.mark.usefixtures("sqlite_pools")


def _journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def test_new_file_database_gets_wal_and_the_callers_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "wal.db"
    conn = pooled.connect(db, timeout=2.5)
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (2500,)
    conn.close()
    assert _journal_mode(db) == "wal"
    assert pooled.pool_figures()["databases"][f"{db} [timeout=2.5]"]["wal_switched"] is True


def test_wal_opt_out(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SQLITE_POOL_WAL", "0")
    db = make_db(tmp_path / "optout.db")
    pooled.connect(db).close()
    assert _journal_mode(db) == "delete"


def test_read_only_uri_is_not_switched(tmp_path: Path) -> None:
    db = make_db(tmp_path / "ro.db", rows=2)
    conn = pooled.connect(f"file:{db}?mode=ro", uri=True)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("INSERT INTO t (name) VALUES ('x')")
    conn.close()
    assert _journal_mode(db) == "delete"


def test_callers_journal_mode_wins_and_sticks(tmp_path: Path) -> None:
    db = make_db(tmp_path / "chosen.db")
    idle = pooled.connect(db)
    conn = pooled.connect(db)
    idle.close()  # an idle pooled connection must not stop the caller's change
    assert conn.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    conn.close()
    for _ in range(3):
        pooled.connect(db).close()
    assert _journal_mode(db) == "delete"


def test_existing_wal_file_is_kept(tmp_path: Path) -> None:
    db = make_db(tmp_path / "already.db")
    setup = sqlite3.connect(db)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.close()
    pooled.connect(db).close()
    assert _journal_mode(db) == "wal"
    assert figures(db)["wal_switched"] is False


def test_eight_threads_of_short_write_transactions_never_see_locked(tmp_path: Path) -> None:
    db = make_db(tmp_path / "busy.db")
    threads_count, per_thread = 8, 40
    errors: list[BaseException] = []
    start = threading.Barrier(threads_count)

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                conn = pooled.connect(db)
                with conn:
                    conn.execute("INSERT INTO t (name) VALUES (?)", (f"{n}-{i}",))
                conn.execute("SELECT count(*) FROM t").fetchone()
                conn.close()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads_count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    check = sqlite3.connect(db)
    assert check.execute("SELECT count(*) FROM t").fetchone() == (threads_count * per_thread,)
    check.close()
    stats = figures(db)
    assert stats["checked_out"] == 0
    assert stats["reuses"] > stats["connections_created"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_never_uses_the_parents_connections(tmp_path: Path) -> None:
    db = make_db(tmp_path / "fork.db")
    held = pooled.connect(db)  # borrowed across the fork
    idle = pooled.connect(db)
    parent_raws = {id(raw_of(held)), id(raw_of(idle))}
    idle.close()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report, then leave without running any parent cleanup
        status = 1
        try:
            conn = pooled.connect(db)
            fresh = id(raw_of(conn)) not in parent_raws
            conn.execute("INSERT INTO t (name) VALUES ('child')")
            conn.commit()
            conn.close()
            held.close()  # the inherited proxy: abandoned, not pooled in the child
            again = pooled.connect(db)
            fresh = fresh and id(raw_of(again)) not in parent_raws
            again.close()
            os.write(write_end, b"fresh" if fresh else b"reused")
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read_end, 100)
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    assert answer == b"fresh"
    assert held.execute("SELECT count(*) FROM t WHERE name = 'child'").fetchone() == (1,)
    held.close()
    assert figures(db)["checked_out"] == 0


@pytest.mark.parametrize(
    ("sql", "effect"),
    [
        ("SELECT 1", SqlEffect.NONE),
        ("select temp from weather", SqlEffect.NONE),
        ("INSERT INTO t VALUES ('PRAGMA query_only=1')", SqlEffect.NONE),
        ("PRAGMA table_info(t)", SqlEffect.NONE),
        ("PRAGMA journal_mode", SqlEffect.NONE),
        ("pragma query_only = 1", SqlEffect.PRAGMA),
        ("PRAGMA main.synchronous(0)", SqlEffect.PRAGMA),
        ("PRAGMA temp.synchronous(0)", SqlEffect.DIRTY),
        ("PRAGMA writable_schema = 1", SqlEffect.DIRTY),
        ("PRAGMA user_version = 7", SqlEffect.WRITES),
        ("PRAGMA user_version", SqlEffect.NONE),
        ("PRAGMA temp.user_version = 7", SqlEffect.DIRTY),
        ("PRAGMA journal_mode=wal", SqlEffect.DIRTY | SqlEffect.JOURNAL_MODE),
        ("SELECT 1; attach 'x.db' as x", SqlEffect.DIRTY),
        ("DETACH x", SqlEffect.DIRTY),
        ("create temporary view v as select 1", SqlEffect.DIRTY | SqlEffect.WRITES),
        ("CREATE TABLE [temp].x (a)", SqlEffect.DIRTY | SqlEffect.WRITES),
        ("/* PRAGMA x=1 */ SELECT 1 -- ATTACH", SqlEffect.NONE),
        ("CREATE TABLE real_table (a)", SqlEffect.WRITES),
        ("-- schema\nCREATE INDEX i ON t (a)", SqlEffect.WRITES),
        ("SELECT 1; DROP TABLE t", SqlEffect.WRITES),
        ("ALTER TABLE t ADD COLUMN b", SqlEffect.WRITES),
        ("VACUUM", SqlEffect.WRITES),
        ("SELECT created, dropped FROM t", SqlEffect.NONE),
        ("SELECT 'CREATE TABLE x (a)'", SqlEffect.NONE),
    ],
)
def test_sql_effect_classification(sql: str, effect: SqlEffect) -> None:
    assert sql_effect(sql) == effect
