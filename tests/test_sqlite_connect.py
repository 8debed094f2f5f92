"""db_utils.sqlite.connect keeps sqlite3.connect's signature and semantics while reusing file connections.

Every test uses real SQLite files in tmp_path; "same as sqlite3" is checked against sqlite3 itself.
"""

from __future__ import annotations

import gc
import inspect
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from db_utils import sqlite as pooled
from db_utils.config import ConfigError
from db_utils.stats import collect
from tests.test_sqlite_support import figures, make_db, raw_of

pytestmark = pytest.mark.usefixtures("sqlite_pools")

CLOSED = "Cannot operate on a closed database."


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "app.db", rows=3)


# -- signature ---------------------------------------------------------------------------------------------
def _sqlite3_connect_signature() -> inspect.Signature:
    try:
        return inspect.signature(sqlite3.connect)
    except ValueError:
        # 3.11's text signature says factory=ConnectionType, which inspect cannot evaluate.
        text = sqlite3.connect.__text_signature__  # type: ignore[attr-defined]  # typeshed: an overload
        assert text is not None
        text = text.replace("$module, /, ", "").replace("ConnectionType", "sqlite3.Connection")
        namespace: dict[str, Any] = {"sqlite3": sqlite3}
        exec(f"def f{text}: pass", namespace)
        return inspect.signature(namespace["f"])


def test_signature_is_sqlite3_connects() -> None:
    expected = _sqlite3_connect_signature()
    actual = inspect.signature(pooled.connect)
    assert list(actual.parameters) == list(expected.parameters)
    for name, param in expected.parameters.items():
        mine = actual.parameters[name]
        assert mine.kind == param.kind, name
        assert mine.default == param.default, name


def test_positional_arguments_work_like_sqlite3(db: Path) -> None:
    conn = pooled.connect(str(db), 1.5, 0, None, True, sqlite3.Connection, 64, False)
    assert conn.isolation_level is None
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (3,)
    conn.close()


# -- what is never pooled ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("database", "uri"),
    [
        (":memory:", False),
        ("", False),
        ("file::memory:", True),
        ("file:memdb_x?mode=memory&cache=shared", True),
    ],
)
def test_memory_and_temp_databases_are_plain_sqlite3(database: str, uri: bool) -> None:
    first = pooled.connect(database, uri=uri)
    assert type(first) is sqlite3.Connection
    first.execute("CREATE TABLE only_here (x)")
    if database in (":memory:", "", "file::memory:"):
        second = pooled.connect(database, uri=uri)
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            second.execute("SELECT * FROM only_here")
        second.close()
    first.close()
    assert pooled.pool_figures()["databases"] == {}


def test_shared_memory_uri_vanishes_with_its_last_connection_as_in_sqlite3() -> None:
    name = "file:vanish_db?mode=memory&cache=shared"
    conn = pooled.connect(name, uri=True)
    conn.execute("CREATE TABLE x (a)")
    conn.close()
    again = pooled.connect(name, uri=True)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        again.execute("SELECT * FROM x")
    again.close()


def test_custom_factory_is_not_pooled(db: Path) -> None:
    class MyConnection(sqlite3.Connection):
        pass

    conn = pooled.connect(db, factory=MyConnection)
    assert type(conn) is MyConnection
    conn.close()
    assert pooled.pool_figures()["databases"] == {}


# -- reuse -------------------------------------------------------------------------------------------------
def test_file_database_reuses_the_same_connection(db: Path) -> None:
    first = pooled.connect(db)
    raw = raw_of(first)
    first.close()
    second = pooled.connect(str(db))
    assert raw_of(second) is raw
    second.close()
    stats = figures(db)
    assert stats["connections_created"] == 1
    assert stats["checkouts"] == 2
    assert stats["reuses"] == 1
    assert stats["reuse_rate"] == 0.5
    assert stats["checked_out"] == 0
    assert collect()["sqlite"]["databases"][str(db)]["reuses"] == 1


def test_relative_paths_follow_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        make_db(tmp_path / sub / "rel.db", rows=1 if sub == "a" else 2)
    monkeypatch.chdir(tmp_path / "a")
    conn = pooled.connect("rel.db")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
    conn.close()
    monkeypatch.chdir(tmp_path / "b")
    conn = pooled.connect("rel.db")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
    conn.close()


def _tables(conn: Any) -> list[str]:
    return [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


@pytest.mark.parametrize("uri", [False, True])
def test_a_deleted_database_file_is_not_served_from_the_pool(db: Path, uri: bool) -> None:
    # A test suite's teardown (or an app's reset) deletes the file; sqlite3 then creates a new, empty one.
    name = f"file:{db}" if uri else str(db)
    conn = pooled.connect(name, uri=uri)
    held = pooled.connect(name, uri=uri)  # borrowed while the file goes: must not come back either
    conn.close()
    db.unlink()
    conn = pooled.connect(name, uri=uri)
    assert _tables(conn) == []
    assert db.exists()
    conn.execute("CREATE TABLE fresh (x)")
    conn.commit()
    held.close()
    conn.close()
    for _ in range(3):  # whichever idle connection comes back, it has the new file open
        again = [pooled.connect(name, uri=uri) for _ in range(2)]
        assert [_tables(c) for c in again] == [["fresh"], ["fresh"]]
        for c in again:
            c.close()
    plain = sqlite3.connect(db)
    assert _tables(plain) == ["fresh"]
    plain.close()


def test_a_file_renamed_away_or_replaced_is_not_served_from_the_pool(db: Path, tmp_path: Path) -> None:
    conn = pooled.connect(db)
    conn.close()
    db.rename(tmp_path / "app.db.old")  # a migration moves the old database aside
    conn = pooled.connect(db)
    assert _tables(conn) == []
    conn.close()
    make_db(tmp_path / "other.db", rows=5)
    os.replace(tmp_path / "other.db", db)  # an atomic swap of a new database into place
    conn = pooled.connect(db)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (5,)
    conn.close()
    assert figures(db)["invalidated"] == 2


def test_an_unchanged_file_keeps_its_connection_after_another_file_changed(db: Path, tmp_path: Path) -> None:
    other = make_db(tmp_path / "other.db")
    first = pooled.connect(db)
    raw = raw_of(first)
    first.close()
    pooled.connect(other).close()
    other.unlink()
    pooled.connect(other).close()
    second = pooled.connect(db)
    assert raw_of(second) is raw
    second.close()


def test_closed_database_moved_aside_with_its_side_files_keeps_its_rows(tmp_path: Path) -> None:
    _write_close_and_move_aside(tmp_path)


def test_without_wal_a_closed_database_moved_aside_keeps_its_rows(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("SQLITE_POOL_WAL", "false")  # the database never leaves delete mode
    _write_close_and_move_aside(tmp_path)


def _write_close_and_move_aside(tmp_path: Path) -> None:
    path = tmp_path / "passdb.sqlite"
    conn = pooled.connect(path)
    conn.execute("CREATE TABLE users (addr TEXT)")
    conn.executemany("INSERT INTO users VALUES (?)", [(f"u{i}",) for i in range(500)])
    conn.commit()
    conn.close()  # with sqlite3, every committed row is now in the main file and there are no side files
    path.rename(tmp_path / "passdb.sqlite.old")
    for side in tmp_path.glob("passdb.sqlite-*"):
        side.unlink()
    plain = sqlite3.connect(tmp_path / "passdb.sqlite.old")
    try:
        assert plain.execute("SELECT count(*) FROM users").fetchone() == (500,)
    finally:
        plain.close()


def test_options_that_change_behavior_get_their_own_pool(db: Path) -> None:
    plain = pooled.connect(db)
    autocommit = pooled.connect(db, isolation_level=None)
    assert raw_of(plain) is not raw_of(autocommit)
    plain.close()
    autocommit.close()
    again = pooled.connect(db, isolation_level=None)
    assert again.isolation_level is None
    again.close()
    assert len(pooled.pool_figures()["databases"]) == 2


def test_total_changes_counts_from_this_borrowers_connect(db: Path) -> None:
    conn = pooled.connect(db)
    conn.execute("INSERT INTO t (name) VALUES ('x')")
    conn.commit()
    assert conn.total_changes == 1
    conn.close()
    conn = pooled.connect(db)
    assert conn.total_changes == 0
    conn.close()


# -- state never reaches the next borrower -----------------------------------------------------------------
def test_row_text_factory_and_isolation_level_are_reset(db: Path) -> None:
    first = pooled.connect(db)
    first.row_factory = sqlite3.Row
    first.text_factory = bytes
    first.isolation_level = None
    assert first.execute("SELECT name FROM t WHERE id = 1").fetchone()["name"] == b"n0"
    first.close()
    second = pooled.connect(db)
    assert second.row_factory is None
    assert second.text_factory is str
    assert cast("str | None", second.isolation_level) == ""  # typeshed's Literal omits "", the default
    assert second.execute("SELECT name FROM t WHERE id = 1").fetchone() == ("n0",)
    assert raw_of(second).row_factory is None
    second.close()


def _dirtying_calls() -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = [
        ("create_function", lambda c: c.create_function("leak", 0, lambda: 1)),
        ("create_aggregate", lambda c: c.create_aggregate("leak", 1, _Sum)),
        ("create_collation", lambda c: c.create_collation("leak", lambda a, b: 0)),
        ("set_authorizer", lambda c: c.set_authorizer(lambda *a: sqlite3.SQLITE_OK)),
        ("set_progress_handler", lambda c: c.set_progress_handler(lambda: 0, 100)),
        ("set_trace_callback", lambda c: c.set_trace_callback(lambda s: None)),
        ("setlimit", lambda c: c.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)),
        ("deserialize", lambda c: c.deserialize(c.serialize())),
        ("pragma locking_mode", lambda c: c.execute("PRAGMA locking_mode = EXCLUSIVE")),
        ("pragma of the temp schema", lambda c: c.execute("pragma temp.cache_size=1")),
        ("pragma call form", lambda c: c.execute("PRAGMA main.cache_spill(100)")),
        ("attach", lambda c: c.execute("ATTACH DATABASE ':memory:' AS other")),
        ("temp table", lambda c: c.execute("CREATE TEMP TABLE scratch (x)")),
        ("temp schema table", lambda c: c.execute('CREATE TABLE "temp".scratch (x)')),
        ("executescript", lambda c: c.executescript("SELECT 1; /* x */ PRAGMA writable_schema=1;")),
        ("cursor execute", lambda c: c.cursor().execute("PRAGMA cache_spill = 0")),
    ]
    if hasattr(sqlite3.Connection, "create_window_function"):
        calls.append(("create_window_function", lambda c: c.create_window_function("leak", 1, _Sum)))
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        calls.append(("enable_load_extension", lambda c: c.enable_load_extension(True)))
        calls.append(("load_extension", _try_load_extension))
    return calls


class _Sum:
    def __init__(self) -> None:
        self.total = 0

    def step(self, value: int) -> None:
        self.total += value

    def value(self) -> int:
        return self.total

    def inverse(self, value: int) -> None:
        self.total -= value

    def finalize(self) -> int:
        return self.total


def _try_load_extension(conn: Any) -> None:
    conn.enable_load_extension(True)
    with pytest.raises(sqlite3.OperationalError):
        conn.load_extension("/nonexistent/extension")


@pytest.mark.parametrize(("name", "call"), _dirtying_calls(), ids=[n for n, _ in _dirtying_calls()])
def test_state_a_rollback_cannot_undo_closes_the_connection(db: Path, name: str, call: Any) -> None:
    first = pooled.connect(db)
    raw = raw_of(first)
    call(first)
    first.close()
    with pytest.raises(sqlite3.ProgrammingError):
        raw.execute("SELECT 1")  # the dirty connection was really closed, not kept
    second = pooled.connect(db)
    assert raw_of(second) is not raw
    assert figures(db)["discarded_dirty"] == 1
    _assert_pristine(second)
    second.close()


def _assert_pristine(conn: Any) -> None:
    """Nothing any dirtying call above does is visible on this connection."""
    with pytest.raises(sqlite3.OperationalError, match="no such function"):
        conn.execute("SELECT leak()")
    assert conn.execute("PRAGMA query_only").fetchone() == (0,)
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (0,)
    assert conn.execute("PRAGMA recursive_triggers").fetchone() == (0,)
    assert conn.execute("PRAGMA locking_mode").fetchone() == ("normal",)
    assert conn.execute("PRAGMA writable_schema").fetchone() == (0,)
    assert [row[1] for row in conn.execute("PRAGMA database_list")] == ["main"]
    assert conn.execute("SELECT count(*) FROM temp.sqlite_master").fetchone() == (0,)
    assert conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) > 1000
    conn.execute("INSERT INTO t (name) VALUES ('writable')")  # query_only and authorizer are gone
    conn.rollback()


def test_read_only_pragmas_keep_the_connection(db: Path) -> None:
    conn = pooled.connect(db)
    raw = raw_of(conn)
    conn.execute("PRAGMA table_info(t)").fetchall()
    conn.execute("PRAGMA foreign_keys").fetchall()
    conn.execute("SELECT 'PRAGMA query_only = 1' -- ATTACH").fetchall()
    conn.close()
    again = pooled.connect(db)
    assert raw_of(again) is raw
    again.close()


def test_open_transaction_is_rolled_back_and_no_lock_is_held(db: Path) -> None:
    conn = pooled.connect(db)
    conn.execute("INSERT INTO t (name) VALUES ('uncommitted')")
    assert conn.in_transaction
    conn.close()
    other = sqlite3.connect(db, timeout=0)  # fails at once if any lock were still held
    assert other.execute("SELECT count(*) FROM t WHERE name = 'uncommitted'").fetchone() == (0,)
    other.execute("INSERT INTO t (name) VALUES ('other')")
    other.commit()
    other.close()


def test_unfinished_select_does_not_keep_a_read_lock(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SQLITE_POOL_WAL", "0")  # rollback journal: a pending read would block writers
    db = make_db(tmp_path / "delete_mode.db", rows=50)
    conn = pooled.connect(db)
    cursor = conn.execute("SELECT * FROM t")
    assert cursor.fetchone() is not None
    conn.close()
    other = sqlite3.connect(db, timeout=0)
    other.execute("DELETE FROM t")
    other.commit()  # needs an exclusive lock: would raise "database is locked" if the read were alive
    other.close()
    with pytest.raises(sqlite3.ProgrammingError, match=CLOSED):
        cursor.fetchone()


# -- context manager and close -----------------------------------------------------------------------------
def test_with_commits_or_rolls_back_and_does_not_close(db: Path) -> None:
    conn = pooled.connect(db)
    with conn:
        conn.execute("INSERT INTO t (name) VALUES ('committed')")

    def fail_inside_with() -> None:
        with conn:
            conn.execute("INSERT INTO t (name) VALUES ('rolled back')")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_inside_with()
    assert conn.execute("SELECT name FROM t WHERE name IN ('committed', 'rolled back')").fetchall() == [
        ("committed",)
    ]
    assert figures(db)["checked_out"] == 1
    conn.close()


def test_close_is_idempotent_and_use_after_close_raises_like_sqlite3(db: Path) -> None:
    conn = pooled.connect(db)
    cursor = conn.cursor()
    conn.close()
    conn.close()
    assert figures(db)["checkins"] == 1
    for action in (
        lambda: conn.execute("SELECT 1"),
        conn.cursor,
        conn.commit,
        conn.rollback,
        lambda: conn.total_changes,
        lambda: conn.in_transaction,
        lambda: conn.isolation_level,
        conn.interrupt,
        conn.iterdump,
        conn.__enter__,
        lambda: conn.create_function("f", 0, int),
        lambda: cursor.execute("SELECT 1"),
        cursor.fetchone,
        cursor.close,
    ):
        with pytest.raises(sqlite3.ProgrammingError, match=re.escape(CLOSED)):
            action()
    conn.row_factory = sqlite3.Row  # sqlite3 allows these on a closed connection
    conn.isolation_level = None
    assert "closed" in repr(conn)


def test_closed_cursor_error_comes_first_as_in_sqlite3(db: Path) -> None:
    conn = pooled.connect(db)
    cursor = conn.cursor()
    cursor.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
        cursor.execute("SELECT 1")
    conn.close()


def test_dropped_connection_is_returned_with_a_resource_warning(db: Path) -> None:
    holder = [pooled.connect(db)]
    holder[0].execute("INSERT INTO t (name) VALUES ('never committed')")

    def drop() -> None:
        holder.clear()
        gc.collect()

    with pytest.warns(ResourceWarning, match="without close"):
        drop()
    stats = figures(db)
    assert stats["checked_out"] == 0
    assert stats["idle"] == 1
    check = pooled.connect(db)
    assert check.execute("SELECT count(*) FROM t WHERE name = 'never committed'").fetchone() == (0,)
    check.close()


# -- threads -----------------------------------------------------------------------------------------------
def _in_thread(fn: Any) -> BaseException | None:
    outcome: list[BaseException | None] = [None]

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            outcome[0] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return outcome[0]


def test_check_same_thread_is_enforced_for_the_caller(db: Path) -> None:
    conn = pooled.connect(db)
    cursor = conn.cursor()
    reference = sqlite3.connect(db)
    expected = _in_thread(reference.cursor)
    reference.close()
    for action in (
        lambda: conn.execute("SELECT 1"),
        conn.close,
        conn.commit,
        lambda: cursor.execute("SELECT 1"),
    ):
        error = _in_thread(action)
        assert type(error) is type(expected) is sqlite3.ProgrammingError
        assert str(error).split(".")[0] == str(expected).split(".")[0]
    assert _in_thread(lambda: conn.in_transaction) is None  # sqlite3 allows these from any thread
    assert _in_thread(conn.interrupt) is None
    conn.close()


def test_check_same_thread_false_allows_other_threads_and_raw_moves(db: Path) -> None:
    conn = pooled.connect(db, check_same_thread=False)
    raw = raw_of(conn)
    assert _in_thread(lambda: conn.execute("SELECT 1").fetchall()) is None
    assert _in_thread(conn.close) is None
    borrowed: list[Any] = []

    def borrow_elsewhere() -> None:
        other = pooled.connect(db)  # check_same_thread=True, in a new thread, on the same raw connection
        borrowed.append(raw_of(other))
        other.execute("SELECT 1").fetchall()
        other.close()

    assert _in_thread(borrow_elsewhere) is None
    assert borrowed == [raw]


# -- cursors cannot reach the raw connection ------------------------------------------------------------
def test_cursor_connection_is_the_proxy(db: Path) -> None:
    conn = pooled.connect(db)
    raw = raw_of(conn)
    for cursor in (
        conn.cursor(),
        conn.execute("SELECT 1"),
        conn.executemany("INSERT INTO t (name) VALUES (?)", [("a",), ("b",)]),
        conn.executescript("SELECT 1;"),
    ):
        assert cursor.connection is conn
        assert isinstance(cursor, sqlite3.Cursor)
    conn.row_factory = lambda cursor, row: cursor.connection
    assert conn.execute("SELECT 1").fetchone() is conn
    conn.row_factory = None
    conn.execute("SELECT 1").connection.close()  # closes the proxy (returns), not the raw connection
    with pytest.raises(sqlite3.ProgrammingError, match=CLOSED):
        conn.execute("SELECT 1")
    assert raw.execute("SELECT 1").fetchone() == (1,)  # still open: pooled
    again = pooled.connect(db)
    assert raw_of(again) is raw
    again.close()


def test_cursor_subclass_factory_is_wrapped(db: Path) -> None:
    class DictCursor(sqlite3.Cursor):
        def first(self) -> Any:
            return self.fetchone()

    conn = pooled.connect(db)
    raw = raw_of(conn)
    cursor = conn.cursor(DictCursor)
    assert isinstance(cursor, DictCursor)
    assert cursor.connection is conn
    assert cursor.execute("SELECT 7").first() == (7,)
    conn.close()
    again = pooled.connect(db)
    assert raw_of(again) is raw
    again.close()


def test_cursor_factory_that_sees_the_raw_connection_makes_it_dirty(db: Path) -> None:
    kept: list[Any] = []

    class KeepingCursor(sqlite3.Cursor):
        def __init__(self, connection: Any) -> None:
            super().__init__(connection)
            kept.append(connection)

    conn = pooled.connect(db)
    raw = raw_of(conn)
    conn.cursor(KeepingCursor).execute("SELECT 1")
    conn.close()
    kept[0].close()  # the caller closes what it kept: must not hurt anyone else
    again = pooled.connect(db)
    assert raw_of(again) is not raw
    assert again.execute("SELECT 1").fetchone() == (1,)
    again.close()


def test_fetchmany_keeps_arraysize_default(db: Path) -> None:
    conn = pooled.connect(db)
    cursor = conn.execute("SELECT id FROM t ORDER BY id")
    cursor.arraysize = 2
    assert cursor.fetchmany() == [(1,), (2,)]
    assert cursor.fetchmany(size=5) == [(3,)]
    assert list(conn.execute("SELECT id FROM t ORDER BY id")) == [(1,), (2,), (3,)]
    conn.close()


# -- backup, iterdump, blobs -----------------------------------------------------------------------------
def test_backup_accepts_proxies_on_both_sides(db: Path, tmp_path: Path) -> None:
    source = pooled.connect(db)
    plain_target = sqlite3.connect(":memory:")
    source.backup(plain_target)
    assert plain_target.execute("SELECT count(*) FROM t").fetchone() == (3,)
    target_db = tmp_path / "copy.db"
    target = pooled.connect(target_db)
    source.backup(target)
    assert target.execute("SELECT count(*) FROM t").fetchone() == (3,)
    plain_source = sqlite3.connect(":memory:")
    plain_source.execute("CREATE TABLE only_plain (x)")
    with pytest.raises(TypeError):  # documented: a C connection only accepts C connections
        plain_source.backup(target)
    target.close()
    source.close()
    plain_source.close()
    plain_target.close()


def test_iterdump_matches_sqlite3_and_cleans_up(db: Path) -> None:
    reference = sqlite3.connect(db)
    expected = list(reference.iterdump())
    reference.close()
    conn = pooled.connect(db)
    assert list(conn.iterdump()) == expected
    partial = conn.iterdump()
    next(partial)
    next(partial)
    conn.close()
    other = sqlite3.connect(db, timeout=0)
    other.execute("DELETE FROM t")
    other.commit()
    other.close()


def test_blob_is_closed_on_return(tmp_path: Path) -> None:
    db = tmp_path / "blob.db"
    setup = sqlite3.connect(db)
    setup.execute("CREATE TABLE b (data BLOB)")
    setup.execute("INSERT INTO b VALUES (zeroblob(8))")
    setup.commit()
    setup.close()
    conn = pooled.connect(db)
    blob = conn.blobopen("b", "data", 1)
    blob.write(b"abcdefgh")
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError):
        blob.read()
    check = pooled.connect(db)
    assert check.execute("SELECT data FROM b").fetchone() == (b"abcdefgh",)
    check.close()


# -- settings and errors -----------------------------------------------------------------------------------
def test_bad_setting_names_the_variable(db: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SQLITE_POOL_SIZE", "lots")
    with pytest.raises(ConfigError, match="SQLITE_POOL_SIZE"):
        pooled.connect(db)
    clean_env.setenv("SQLITE_POOL_SIZE", "-1")
    with pytest.raises(ConfigError, match="SQLITE_POOL_SIZE"):
        pooled.connect(db)
    clean_env.setenv("SQLITE_POOL_SIZE", "2")
    clean_env.setenv("SQLITE_POOL_WAL", "maybe")
    with pytest.raises(ConfigError, match="SQLITE_POOL_WAL"):
        pooled.connect(db)


def test_pool_size_bounds_idle_connections(db: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SQLITE_POOL_SIZE", "2")
    conns = [pooled.connect(db) for _ in range(4)]  # never blocks, like sqlite3.connect
    for conn in conns:
        conn.close()
    stats = figures(db)
    assert stats["idle"] == 2
    assert stats["connections_created"] == 4


def test_pool_size_zero_disables_reuse(db: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SQLITE_POOL_SIZE", "0")
    first = pooled.connect(db)
    raw = raw_of(first)
    first.close()
    second = pooled.connect(db)
    assert raw_of(second) is not raw
    second.close()


def _error_of(call: Any) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("sqlite3 accepted the arguments")


@pytest.mark.parametrize(
    "kwargs",
    [{"isolation_level": "bogus"}, {"isolation_level": []}, {"timeout": "soon"}, {"detect_types": "x"}],
)
def test_bad_arguments_raise_what_sqlite3_raises(db: Path, kwargs: dict[str, Any]) -> None:
    expected = _error_of(lambda: sqlite3.connect(db, **kwargs))
    with pytest.raises(type(expected)) as actual:
        pooled.connect(db, **kwargs)
    assert str(actual.value) == str(expected)
    assert pooled.pool_figures()["databases"] == {}


def test_bad_database_argument_raises_what_sqlite3_raises(tmp_path: Path) -> None:
    for database in (123, None, tmp_path / "missing_dir" / "x.db"):
        expected = _error_of(lambda: sqlite3.connect(database))  # type: ignore[arg-type]
        with pytest.raises(type(expected)):
            pooled.connect(database)


def test_bytes_and_pathlike_databases_share_the_pool(db: Path) -> None:
    first = pooled.connect(os.fsencode(db))
    raw = raw_of(first)
    first.close()
    second = pooled.connect(db)
    assert raw_of(second) is raw
    second.close()
