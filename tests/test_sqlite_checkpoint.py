"""After every pooled connection is returned, the main database file holds every committed row.

With sqlite3, the last ``close()`` copies the WAL into the main file, and legacy code relies on that: it
moves, copies or measures the file, or deletes its ``-wal``/``-shm`` files (chatmail's migrate_db does).
The pool checkpoints when a lease that wrote comes back and none is out; these tests read the files the
way such code does, with plain sqlite3 in another process, so only what is on disk counts.
"""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from db_utils import sqlite as pooled
from tests.test_sqlite_support import figures, make_db, raw_of

pytestmark = pytest.mark.usefixtures("sqlite_pools")

ROWS = 300

# Run by a fresh interpreter: what a plain sqlite3 connection sees in the file named by argv[1].
_READER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
try:
    print(conn.execute(sys.argv[2]).fetchone()[0])
finally:
    conn.close()
"""


def read_elsewhere(path: Path, sql: str) -> str:
    """The first column ``sql`` returns from ``path``, read by plain sqlite3 in another process."""
    done = subprocess.run(
        [sys.executable, "-c", _READER, str(path), sql], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def remove_side_files(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def write_rows(path: Path, names: list[str]) -> None:
    conn = pooled.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS users (addr TEXT)")
    conn.executemany("INSERT INTO users VALUES (?)", [(name,) for name in names])
    conn.commit()
    conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = make_db(tmp_path / "passdb.sqlite")
    conn = pooled.connect(path)  # the pool switches the file to WAL and keeps this connection idle
    conn.execute("SELECT count(*) FROM t").fetchone()  # its first read in WAL opens the -wal file
    conn.close()
    assert Path(f"{path}-wal").exists()
    return path


@pytest.mark.parametrize("move", ["replace", "copy"])
def test_a_closed_database_moved_aside_without_side_files_has_every_row(
    db: Path, tmp_path: Path, move: str
) -> None:
    write_rows(db, [f"u{i}" for i in range(ROWS)])
    aside = tmp_path / "passdb.sqlite.old"
    if move == "replace":
        os.replace(db, aside)
    else:
        shutil.copy(db, aside)
    remove_side_files(db)
    assert read_elsewhere(aside, "SELECT count(*) FROM users") == str(ROWS)
    assert read_elsewhere(aside, "PRAGMA integrity_check") == "ok"

    # The path is used again: a new database (replace) or the same file without its -wal (copy). The idle
    # connection still has the deleted -wal open; reusing it would write where no one else reads.
    write_rows(db, ["after"])
    expected = "1" if move == "replace" else str(ROWS + 1)
    assert read_elsewhere(db, "SELECT count(*) FROM users") == expected
    assert read_elsewhere(db, "SELECT count(*) FROM users WHERE addr = 'after'") == "1"
    assert figures(db)["invalidated"] >= 1


def test_the_file_size_is_the_databases_after_close(db: Path) -> None:
    write_rows(db, [f"u{i}" * 50 for i in range(ROWS)])
    conn = pooled.connect(db)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    assert db.stat().st_size == pages * page_size > 0


@pytest.mark.parametrize(
    ("script", "check", "expected"),
    [
        ("CREATE TABLE made (a)", "SELECT count(*) FROM sqlite_master WHERE name = 'made'", "1"),
        ("CREATE TABLE made (a); CREATE INDEX made_a ON made (a)", "SELECT count(*) FROM sqlite_master", "3"),
        ("PRAGMA user_version = 7", "PRAGMA user_version", "7"),
        (
            "INSERT INTO t (name) VALUES ('x'); INSERT INTO t (name) VALUES ('y')",
            "SELECT count(*) FROM t",
            "2",
        ),
    ],
)
@pytest.mark.parametrize("method", ["execute", "executescript"])
def test_writes_that_change_no_rows_are_checkpointed_too(
    db: Path, tmp_path: Path, script: str, check: str, expected: str, method: str
) -> None:
    """``total_changes`` does not count DDL or ``user_version``: the statement analysis must."""
    conn = pooled.connect(db)
    if method == "executescript":
        conn.executescript(script)
    else:
        for statement in script.split("; "):
            conn.execute(statement)
    conn.commit()
    conn.close()
    only_main = tmp_path / "copy.sqlite"
    shutil.copyfile(db, only_main)  # a backup that copies the main file alone
    assert read_elsewhere(only_main, check) == expected


def test_a_backup_into_a_pooled_connection_reaches_the_main_file(tmp_path: Path) -> None:
    """Troostwatch's snapshot: ``with connect(src) as s, connect(dst) as d: s.backup(d)``, then the file
    is copied. The pages a backup writes are not in ``total_changes``; they were left in the -wal."""
    src = make_db(tmp_path / "live.sqlite")
    write_rows(src, ["a", "b", "c"])
    target = tmp_path / "snapshot.sqlite"
    with pooled.connect(src) as from_conn, pooled.connect(target) as to_conn:
        from_conn.backup(to_conn)
    del from_conn, to_conn  # never closed, as in the project: returned when collected
    gc.collect()
    only_main = tmp_path / "copy.sqlite"
    shutil.copyfile(target, only_main)
    assert read_elsewhere(only_main, "SELECT count(*) FROM users") == "3"


def test_a_blob_write_reaches_the_main_file(db: Path, tmp_path: Path) -> None:
    conn = pooled.connect(db)
    conn.execute("CREATE TABLE blobs (b BLOB)")
    conn.execute("INSERT INTO blobs VALUES (zeroblob(4))")
    conn.commit()
    conn.close()
    conn = pooled.connect(db)
    with conn.blobopen("blobs", "b", 1) as blob:
        blob.write(b"\xff" * 4)
    conn.commit()
    conn.close()
    only_main = tmp_path / "copy.sqlite"
    shutil.copyfile(db, only_main)
    assert read_elsewhere(only_main, "SELECT hex(b) FROM blobs") == "FFFFFFFF"


def test_read_only_leases_never_checkpoint(db: Path) -> None:
    write_rows(db, ["a"])
    conn = pooled.connect(db)
    raw = raw_of(conn)
    statements: list[str] = []
    raw.set_trace_callback(statements.append)  # sees every statement the pool itself runs on it
    conn.close()
    for _ in range(50):
        conn = pooled.connect(db)
        assert raw_of(conn) is raw
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)
        conn.close()
    assert not [s for s in statements if "wal_checkpoint" in s]
    checkpoints = figures(db)["checkpoints"]
    write_rows(db, ["b"])
    assert [s for s in statements if "wal_checkpoint" in s] == ["PRAGMA main.wal_checkpoint(PASSIVE)"]
    assert figures(db)["checkpoints"] == checkpoints + 1
    conn = pooled.connect(db)
    assert raw_of(conn) is raw  # its own checkpoint does not make the connection stale
    conn.close()
    raw.set_trace_callback(None)


def test_no_checkpoint_while_a_lease_is_out_then_on_the_last_return(db: Path, tmp_path: Path) -> None:
    write_rows(db, [])
    reader = pooled.connect(db)
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (0,)
    before = figures(db)["checkpoints"]
    write_rows(db, ["while the reader is out"])
    assert figures(db)["checkpoints"] == before
    only_main = tmp_path / "copy.sqlite"
    shutil.copyfile(db, only_main)
    assert read_elsewhere(only_main, "SELECT count(*) FROM users") == "0"  # the row is in -wal still
    reader.close()  # read-only, but the last lease out: the pending write is checkpointed now
    assert figures(db)["checkpoints"] == before + 1
    shutil.copyfile(db, only_main)
    assert read_elsewhere(only_main, "SELECT count(*) FROM users") == "1"


def test_concurrent_writers_from_threads_keep_every_row(db: Path, tmp_path: Path) -> None:
    write_rows(db, [])
    threads, per_thread = 6, 25
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                conn = pooled.connect(db, timeout=60)
                conn.execute("INSERT INTO users VALUES (?)", (f"{n}-{i}",))
                conn.commit()
                conn.close()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    stats = figures(db)
    assert stats["checked_out"] == 0
    assert 1 <= stats["checkpoints"] <= threads * per_thread + 1
    only_main = tmp_path / "copy.sqlite"
    shutil.copyfile(db, only_main)
    assert read_elsewhere(only_main, "SELECT count(DISTINCT addr) FROM users") == str(threads * per_thread)


@pytest.mark.xfail(
    sys.version_info < (3, 12),
    strict=True,
    reason="closing the stale idle connection deletes the other process's new -wal: only 3.12+ can turn "
    "off SQLite's checkpoint-and-delete on close (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE)",
)
def test_a_write_by_another_process_after_the_wal_was_deleted_is_kept(db: Path) -> None:
    """The idle connection still has the deleted -wal and -shm open; another process creates new ones and
    writes. The pool must neither read through the old index nor, closing it, delete the new files."""
    write_rows(db, ["mine"])
    remove_side_files(db)
    done = subprocess.run(
        [sys.executable, "-c", _WRITER, str(db)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    conn = pooled.connect(db)
    assert sorted(conn.execute("SELECT addr FROM users")) == [("mine",), ("theirs",)]
    conn.close()


_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("INSERT INTO users VALUES ('theirs')")
conn.commit()
conn.close()
"""


def test_plain_sqlite3_after_the_pool_sees_a_complete_file(tmp_path: Path) -> None:
    """The chatmail shape end to end, in the order its migration runs: write, close, move, delete."""
    path = make_db(tmp_path / "app.db")
    for i in range(20):  # many short write leases, as per-call code does
        conn = pooled.connect(path)
        conn.execute("INSERT INTO t (name) VALUES (?)", (f"n{i}",))
        conn.commit()
        conn.close()
    assert figures(path)["wal_switched"] is True
    os.replace(path, tmp_path / "app.db.old")
    remove_side_files(path)
    plain = sqlite3.connect(tmp_path / "app.db.old")
    try:
        assert plain.execute("SELECT count(*) FROM t").fetchone() == (20,)
    finally:
        plain.close()


def test_an_idle_connection_that_never_read_is_not_reused_after_the_wal_was_deleted(
    db: Path, tmp_path: Path
) -> None:
    """The connection handed out first never opened the -wal; its sibling did. Writes after the deletion
    still reach the files other processes read (the pool treats every idle connection as stale)."""
    writer = pooled.connect(db)
    untouched = pooled.connect(db)  # opened, never reads
    writer.execute("CREATE TABLE users (addr TEXT)")
    writer.execute("INSERT INTO users VALUES ('before')")
    writer.commit()
    writer.close()
    untouched.close()  # returned last: the next connect() pops it first
    shutil.copy(db, tmp_path / "backup.sqlite")
    remove_side_files(db)
    write_rows(db, ["after"])
    assert read_elsewhere(db, "SELECT group_concat(addr) FROM users") == "before,after"
    assert read_elsewhere(tmp_path / "backup.sqlite", "SELECT group_concat(addr) FROM users") == "before"
