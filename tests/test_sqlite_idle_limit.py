"""The process-wide cap on idle SQLite connections, and what the pool leaves on disk when it closes them.

A test suite that opens a fresh database per test made the pool keep every database it had seen open
(three descriptors each in WAL mode) until the process ran out of descriptors, where sqlite3 holds none
after ``close()``; and a database deleted after ``close()`` kept its ``-wal``/``-shm`` files after exit.
Everything here runs on real files; what another process would see is checked from another process.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from db_utils import ConfigError
from db_utils import sqlite as pooled
from db_utils.sqlite import pool as pool_module
from db_utils.sqlite import registry as registry_module
from tests.test_sqlite_support import figures, raw_of

pytestmark = pytest.mark.usefixtures("sqlite_pools")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def create_and_close(path: Path | str) -> None:
    """What a test's fixture does with its own database: create a table, commit, close."""
    conn = pooled.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()


def side_files(path: Path) -> list[str]:
    return [suffix for suffix in ("-wal", "-shm") if os.path.exists(f"{path}{suffix}")]


def total_idle() -> int:
    return sum(pool["idle"] for pool in pooled.pool_figures()["databases"].values())


def run_child(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter, so its exit (and its atexit hooks) happen for real."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("SQLITE_POOL_")}
    child_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False, env=child_env
    )


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors through /proc")
def test_many_databases_keep_the_descriptor_count_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("SQLITE_POOL_MAX_IDLE_TOTAL", "8")
    before = open_fds()
    highest = before
    for i in range(300):
        folder = tmp_path / str(i)
        folder.mkdir()
        create_and_close(folder / "t.db")
        highest = max(highest, open_fds())
    # Eight idle connections, three descriptors each (database, -wal, -shm), and nothing else left open.
    assert highest <= before + 8 * 3 + 3, (before, highest)
    assert total_idle() == 8
    assert len(pool_module._IDLE) == 8
    assert figures(tmp_path / "100" / "t.db")["evicted"] == 1  # the oldest pools are forgotten (POOLS_KEPT)
    # An evicted database was closed for real: SQLite checkpointed and removed its side files.
    assert side_files(tmp_path / "0" / "t.db") == []
    assert sqlite3.connect(tmp_path / "0" / "t.db").execute("SELECT x FROM t").fetchall() == [(1,)]


_LOW_ULIMIT = """
import os, resource, sys
import db_utils.sqlite
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
base = sys.argv[1]
for i in range(400):
    d = os.path.join(base, str(i)); os.mkdir(d)
    c = db_utils.sqlite.connect(os.path.join(d, "t.db"))
    c.execute("create table t(x)"); c.commit(); c.close()
print("ok")
"""


@pytest.mark.parametrize("limit", [256, 140])
def test_default_total_survives_a_low_descriptor_limit(tmp_path, limit):
    # The reproducer from the field, under `ulimit -n 256`: it failed at the 83rd database; under 140
    # (cisc327-library-management's suite) 64 idle connections alone would need 192 descriptors.
    (tmp_path / "default").mkdir()
    done = run_child(_LOW_ULIMIT, str(tmp_path / "default"), str(limit))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    # The cap is what makes it pass: raised out of the way, the same loop runs out of descriptors again.
    (tmp_path / "uncapped").mkdir()
    done = run_child(
        _LOW_ULIMIT, str(tmp_path / "uncapped"), str(limit), env={"SQLITE_POOL_MAX_IDLE_TOTAL": "100000"}
    )
    assert done.returncode != 0
    assert "unable to open database file" in done.stderr


_DEFAULT_UNDER = """
import resource, sys
from db_utils.sqlite.pool import SQLitePoolSettings
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
print(SQLitePoolSettings.from_env().max_idle_total)
"""


@pytest.mark.parametrize(("limit", "total"), [(4096, 64), (1024, 64), (256, 21), (140, 11), (48, 4)])
def test_the_default_total_is_at_most_a_quarter_of_the_descriptor_limit(tmp_path, limit, total):
    done = run_child(_DEFAULT_UNDER, str(limit))
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == total


def test_least_recently_used_is_evicted_first(tmp_path, monkeypatch):
    monkeypatch.setenv("SQLITE_POOL_MAX_IDLE_TOTAL", "2")
    a, b, c = (tmp_path / f"{name}.db" for name in "abc")
    create_and_close(a)
    create_and_close(b)
    conn = pooled.connect(a)  # a becomes the most recently used
    kept = raw_of(conn)
    conn.close()
    create_and_close(c)  # three idle, two allowed: b goes
    assert (figures(a)["idle"], figures(b)["idle"], figures(c)["idle"]) == (1, 0, 1)
    assert (figures(a)["evicted"], figures(b)["evicted"], figures(c)["evicted"]) == (0, 1, 0)
    again = pooled.connect(a)
    assert raw_of(again) is kept  # still the pooled connection, not a new one
    again.close()
    assert figures(a)["connections_created"] == 1
    assert side_files(b) == []  # closed for real, last connection: SQLite cleaned up
    # b comes back with a new connection and its data, and now c is the least recently used.
    assert pooled.connect(b).execute("SELECT count(*) FROM t").fetchone() == (1,)
    assert figures(b)["connections_created"] == 2


def test_total_of_zero_keeps_nothing_idle(tmp_path, monkeypatch):
    monkeypatch.setenv("SQLITE_POOL_MAX_IDLE_TOTAL", "0")
    create_and_close(tmp_path / "a.db")
    assert figures(tmp_path / "a.db")["idle"] == 0
    assert side_files(tmp_path / "a.db") == []


@pytest.mark.parametrize(("value", "message"), [("lots", "is not an integer"), ("-1", "")])
def test_a_bad_total_names_the_variable(tmp_path, monkeypatch, value, message):
    monkeypatch.setenv("SQLITE_POOL_MAX_IDLE_TOTAL", value)
    with pytest.raises(ConfigError, match="SQLITE_POOL_MAX_IDLE_TOTAL") as caught:
        pooled.connect(tmp_path / "a.db")
    assert message in str(caught.value)
    assert not (tmp_path / "a.db").exists()  # failed before opening anything


def test_deleted_then_recreated_database_gets_a_fresh_connection(tmp_path):
    db = tmp_path / "t.db"
    create_and_close(db)
    conn = pooled.connect(db)
    old = raw_of(conn)
    conn.close()
    db.unlink()
    conn = pooled.connect(db)  # sqlite3 would create a new, empty database here
    assert raw_of(conn) is not old
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    conn.execute("CREATE TABLE u (y)")
    conn.commit()
    conn.close()
    assert sqlite3.connect(db).execute("SELECT name FROM sqlite_master").fetchall() == [("u",)]
    assert figures(db)["invalidated"] == 1
    assert figures(db)["idle"] == 1
    assert len(pool_module._IDLE) == 1


def test_opening_a_new_database_closes_idle_ones_whose_file_is_gone(tmp_path):
    gone, replaced, kept = tmp_path / "gone.db", tmp_path / "replaced.db", tmp_path / "kept.db"
    for path in (gone, replaced, kept):
        create_and_close(path)
    gone.unlink()
    sqlite3.connect(tmp_path / "other.db").close()
    os.replace(tmp_path / "other.db", replaced)
    assert side_files(gone) == ["-wal", "-shm"]  # the idle connection keeps them
    create_and_close(tmp_path / "new.db")
    assert (figures(gone)["idle"], figures(replaced)["idle"], figures(kept)["idle"]) == (0, 0, 1)
    assert figures(gone)["invalidated"] == 1
    # As if the caller's close() had been the last one before the delete: nothing left behind.
    assert side_files(gone) == []
    # The replaced database's side files are not the pool's to remove (nor SQLite's, on 3.12+).
    assert sqlite3.connect(replaced).execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_side_files_stay_while_another_process_has_the_deleted_database_open(tmp_path):
    db = tmp_path / "t.db"
    create_and_close(db)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT * FROM t').fetchall();"
            " print('open', flush=True); sys.stdin.read()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        db.unlink()
        pooled.dispose()
        assert side_files(db) == ["-wal", "-shm"]  # the other process still uses them
    finally:
        holder.communicate("")


_AT_EXIT = """
import os, sys
import db_utils.sqlite
path = sys.argv[1]
conn = db_utils.sqlite.connect(path)
conn.execute("CREATE TABLE t (x)")
conn.execute("INSERT INTO t VALUES (1)")
conn.commit()
conn.close()
assert os.path.exists(path + "-wal") and os.path.exists(path + "-shm")
if sys.argv[2] == "delete":
    os.unlink(path)
"""


def test_exit_removes_side_files_of_a_deleted_database(tmp_path):
    db = tmp_path / "t.db"
    done = run_child(_AT_EXIT, str(db), "delete")
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path)) == []


def test_exit_checkpoints_and_removes_side_files_of_a_kept_database(tmp_path):
    db = tmp_path / "t.db"
    done = run_child(_AT_EXIT, str(db), "keep")
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path)) == ["t.db"]
    assert sqlite3.connect(db).execute("SELECT x FROM t").fetchall() == [(1,)]


def test_threads_over_many_databases_keep_the_books_straight(tmp_path, monkeypatch):
    monkeypatch.setenv("SQLITE_POOL_MAX_IDLE_TOTAL", "5")
    paths = [tmp_path / f"{i}.db" for i in range(12)]
    for path in paths:
        create_and_close(path)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(200):
                conn = pooled.connect(paths[(offset + i) % len(paths)], check_same_thread=False)
                conn.execute("INSERT INTO t VALUES (?)", (i,))
                conn.commit()
                conn.close()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert total_idle() == len(pool_module._IDLE) <= 5
    assert all(figures(path)["checked_out"] == 0 for path in paths)
    rows = sum(sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone()[0] for path in paths)
    assert rows == len(paths) + 8 * 200


def test_pools_of_databases_no_longer_used_are_forgotten_beyond_a_bound(tmp_path, monkeypatch):
    """pyutils' query_df opens a database in a new temporary directory per call: the registry kept a pool,
    and its figures, for each of thousands."""
    monkeypatch.setattr(registry_module, "POOLS_KEPT", 8)
    monkeypatch.setenv("SQLITE_POOL_MAX_IDLE_TOTAL", "2")
    kept = pooled.connect(tmp_path / "kept.db")  # lent throughout: its pool is never forgotten
    for i in range(40):
        create_and_close(tmp_path / f"{i}.db")
    databases = pooled.pool_figures()["databases"]
    assert len(databases) <= 8
    assert any(name.endswith("kept.db") for name in databases)
    assert any(name.endswith("39.db") for name in databases)  # the newest are kept
    again = pooled.connect(tmp_path / "0.db")  # a forgotten database works as before, in a new pool
    assert again.execute("SELECT count(*) FROM sqlite_master").fetchone() == (1,)
    again.close()
    kept.close()
