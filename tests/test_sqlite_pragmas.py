"""Per-connection PRAGMAs are restored on return instead of costing the connection (issue 13).

"What a fresh connection gives" is always measured on a real ``sqlite3.connect`` to the same file with the
same arguments, never written down here, so SQLite's compile-time defaults cannot make a test lie.
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from db_utils import sqlite as pooled
from db_utils.sqlite import pragmas
from db_utils.sqlite.statements import analyze
from tests.test_sqlite_support import figures, make_db, raw_of

pytestmark = pytest.mark.usefixtures("sqlite_pools")

# Values differing from SQLite's default for every restorable pragma; the first that differs from the
# connection's value is used (defaults depend on how SQLite was compiled), and the test checks it took.
CHANGED: dict[str, int | tuple[int, ...]] = {
    "analysis_limit": 100,
    "automatic_index": 0,
    "busy_timeout": 1234,
    "cache_size": 100,
    "case_sensitive_like": 1,
    "cell_size_check": 1,
    "defer_foreign_keys": 1,
    "foreign_keys": 1,
    "ignore_check_constraints": 1,
    "journal_size_limit": 4096,
    "legacy_alter_table": 1,
    "max_page_count": 100000,
    "mmap_size": 65536,
    "query_only": 1,
    "recursive_triggers": 1,
    "reverse_unordered_selects": 1,
    "secure_delete": (0, 1),
    "synchronous": 0,
    "temp_store": 2,
    "threads": 2,
    "trusted_schema": 0,
    "wal_autocheckpoint": 10,
}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "app.db", rows=3)


def settings_of(conn: Any) -> dict[str, int]:
    """Every restorable pragma's value on ``conn`` (a plain connection or a proxy's raw connection)."""
    return {name: pragmas.read(conn, name) for name in sorted(pragmas.RESTORABLE)}


def fresh_settings(db: Path, **kwargs: Any) -> dict[str, int]:
    """What a brand-new sqlite3 connection with these arguments has (after the pool's WAL switch)."""
    conn = sqlite3.connect(db, **kwargs)
    try:
        return settings_of(conn)
    finally:
        conn.close()


def test_every_restorable_pragma_is_covered() -> None:
    assert set(CHANGED) == pragmas.RESTORABLE


def test_the_issues_scenario_a_sets_b_sees_defaults_c_reuses(db: Path) -> None:
    a = pooled.connect(db)
    raw = raw_of(a)
    a.execute("PRAGMA foreign_keys = ON")
    a.execute("PRAGMA synchronous = OFF")
    assert a.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert a.execute("PRAGMA synchronous").fetchone() == (0,)
    a.close()

    b = pooled.connect(db)
    assert raw_of(b) is raw  # restored, not discarded
    assert settings_of(raw_of(b)) == fresh_settings(db)
    b.execute("INSERT INTO t (name) VALUES ('b')")  # writable, as fresh
    b.rollback()
    b.close()

    c = pooled.connect(db)
    assert raw_of(c) is raw
    c.execute("PRAGMA foreign_keys = ON")
    c.execute("PRAGMA synchronous = OFF")
    assert c.execute("PRAGMA foreign_keys").fetchone() == (1,)
    c.close()
    stats = figures(db)
    assert stats["connections_created"] == 1
    assert stats["discarded_dirty"] == 0
    assert stats["pragmas_restored"] == 4  # two after A, two after C


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_each_pragma_is_restored_to_what_a_fresh_connection_has(db: Path, name: str) -> None:
    # A non-default timeout: busy_timeout's fresh value comes from the connect() arguments.
    first = pooled.connect(db, timeout=2.5)
    raw = raw_of(first)
    before = settings_of(raw)
    candidates = CHANGED[name]
    value = next(v for v in candidates if v != before[name]) if isinstance(candidates, tuple) else candidates
    first.execute(f"PRAGMA {name} = {value}")
    changed = settings_of(raw)
    if name != "defer_foreign_keys":  # it only holds inside a transaction, then switches itself off
        assert changed[name] != before[name], "the test value must differ from the default"
    first.close()
    second = pooled.connect(db, timeout=2.5)
    assert raw_of(second) is raw
    assert settings_of(raw) == fresh_settings(db, timeout=2.5) == before
    second.close()


def test_case_sensitive_like_has_no_getter_and_is_restored_through_its_effect(db: Path) -> None:
    conn = pooled.connect(db)
    conn.execute("PRAGMA case_sensitive_like = true")
    assert conn.execute("SELECT 'a' LIKE 'A'").fetchone() == (0,)
    conn.close()
    again = pooled.connect(db)
    assert again.execute("SELECT 'a' LIKE 'A'").fetchone() == (1,)
    assert figures(db)["connections_created"] == 1
    again.close()


def test_a_pragma_set_to_the_value_it_has_costs_no_reset(db: Path) -> None:
    conn = pooled.connect(db)
    raw = raw_of(conn)
    fresh = fresh_settings(db)
    conn.close()
    statements: list[str] = []
    raw.set_trace_callback(statements.append)  # on the raw connection, behind the pool's back
    conn = pooled.connect(db)
    conn.execute(f"PRAGMA synchronous = {fresh['synchronous']}")
    conn.execute(f"PRAGMA cache_size = {fresh['cache_size']}")
    conn.close()
    raw.set_trace_callback(None)
    writes = [s for s in statements if "=" in s]
    assert writes == [
        f"PRAGMA synchronous = {fresh['synchronous']}",
        f"PRAGMA cache_size = {fresh['cache_size']}",
    ]
    assert figures(db)["pragmas_restored"] == 0
    again = pooled.connect(db)
    assert raw_of(again) is raw
    again.close()


STATEMENTS_SETTING_UTF8 = [
    "PRAGMA encoding = 'UTF-8'",
    "pragma encoding='utf8'",
    "PRAGMA encoding = UTF8",
    "PRAGMA encoding('UTF-8')",
    'PRAGMA main.encoding = "UTF-8"',
]


@pytest.mark.parametrize("statement", STATEMENTS_SETTING_UTF8)
def test_a_schema_script_setting_utf8_keeps_its_connection(tmp_path: Path, statement: str) -> None:
    """geclass's schema.sql starts with ``PRAGMA encoding='UTF-8'``: what every connection starts with."""
    assert analyze(statement).reason == ""
    path = tmp_path / "new.db"
    for attempt in range(3):
        conn = pooled.connect(path)
        conn.executescript(f"{statement}; CREATE TABLE IF NOT EXISTS t (x);")
        assert conn.execute("PRAGMA encoding").fetchone() == ("UTF-8",)
        conn.close()
    assert figures(path)["discarded_dirty"] == 0
    assert figures(path)["connections_created"] == 1


def test_utf16_on_a_new_database_still_discards_its_connection(tmp_path: Path) -> None:
    path = tmp_path / "new16.db"
    conn = pooled.connect(path)
    conn.execute("PRAGMA encoding = 'UTF-16'")  # the database is not created yet: this connection would
    conn.close()  # make the next borrower's tables UTF-16, which a fresh sqlite3 connection does not
    assert figures(path)["discarded_dirty"] == 1
    assert analyze("PRAGMA temp.encoding = 'UTF-8'").reason  # another schema: not read back, dirty


def test_boolean_words_setting_the_current_value_cost_no_reset(db: Path) -> None:
    conn = pooled.connect(db)
    conn.execute("PRAGMA foreign_keys = off")
    conn.execute("PRAGMA main.recursive_triggers(FALSE)")
    conn.execute(f"PRAGMA busy_timeout = {pragmas.read(raw_of(conn), 'busy_timeout')}")
    conn.close()
    assert figures(db)["pragmas_restored"] == 0


def test_a_write_sqlite_ignored_inside_a_transaction_cannot_hide_an_earlier_change(db: Path) -> None:
    conn = pooled.connect(db)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("INSERT INTO t (name) VALUES ('opens a transaction')")
    conn.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction: the value stays 1
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    conn.close()
    again = pooled.connect(db)
    assert again.execute("PRAGMA foreign_keys").fetchone() == (0,)
    again.close()


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("PRAGMA foreign_keys = ON", (("foreign_keys", 1),)),
        ("pragma foreign_keys=1", (("foreign_keys", 1),)),
        ("pragma foreign_keys=256", (("foreign_keys", None),)),  # SQLite: (u8)256 == 0, false
        ("PRAGMA automatic_index = -1", (("automatic_index", None),)),  # SQLite: not a number, false
        ("PRAGMA cache_size = -2000", (("cache_size", -2000),)),
        ("PRAGMA cache_size = - 2000", (("cache_size", -2000),)),
        ("PRAGMA main.cache_size(100)", (("cache_size", 100),)),
        ("PRAGMA cache_size = 1.5", (("cache_size", None),)),
        ("PRAGMA cache_size = 0x10", (("cache_size", None),)),
        ("PRAGMA synchronous = NORMAL", (("synchronous", None),)),
        ("PRAGMA temp_store = ON", (("temp_store", None),)),  # not a flag: ON means something else
        ("PRAGMA foreign_keys = 'on'", (("foreign_keys", None),)),
        ("PRAGMA foreign_keys = 1; PRAGMA query_only = 0", (("foreign_keys", 1), ("query_only", 0))),
    ],
)
def test_literal_values_are_read_only_when_certain(sql: str, expected: Any) -> None:
    assert analyze(sql).pragmas == expected


def test_the_common_helper_pattern_reuses_one_connection(db: Path) -> None:
    with sqlite3.connect(db) as setup:
        setup.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, t_id INTEGER REFERENCES t(id))")
    setup.close()

    def get_connection() -> sqlite3.Connection:
        conn = pooled.connect(db)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    for _ in range(50):
        conn = get_connection()
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            conn.execute("INSERT INTO child (t_id) VALUES (999)")  # enforced on every call
        conn.close()
    stats = figures(db)
    assert stats["connections_created"] == 1
    assert stats["reuses"] == 49
    assert stats["discarded_dirty"] == 0
    plain = pooled.connect(db)
    plain.execute("INSERT INTO child (t_id) VALUES (999)")  # a borrower without the PRAGMA: not enforced
    plain.rollback()
    plain.close()


def test_two_connections_in_use_at_once_each_get_their_own_values_back(db: Path) -> None:
    first, second = pooled.connect(db), pooled.connect(db)
    first.execute("PRAGMA cache_size = 111")
    second.execute("PRAGMA temp_store = MEMORY")
    second.execute("PRAGMA cache_size = 222")
    raws = {id(raw_of(first)), id(raw_of(second))}
    first.close()
    second.close()
    fresh = fresh_settings(db)
    again = [pooled.connect(db), pooled.connect(db)]
    assert {id(raw_of(c)) for c in again} == raws
    for conn in again:
        assert settings_of(raw_of(conn)) == fresh
        conn.close()


def test_a_restorable_pragma_next_to_a_dirty_statement_still_closes(db: Path) -> None:
    conn = pooled.connect(db)
    raw = raw_of(conn)
    conn.executescript("PRAGMA foreign_keys = ON; PRAGMA writable_schema = ON;")
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError):
        raw.execute("SELECT 1")
    assert figures(db)["discarded_dirty"] == 1


# -- the dropped-connection warning says what really happened ----------------------------------------------
def _drop(conn_holder: list[Any]) -> None:
    conn_holder.clear()
    gc.collect()


def test_dropped_clean_connection_says_it_was_returned(db: Path) -> None:
    holder = [pooled.connect(db)]
    holder[0].execute("PRAGMA foreign_keys = ON")  # restorable: still returned
    with pytest.warns(ResourceWarning, match=r"without close\(\); returned to the pool$"):
        _drop(holder)
    assert figures(db)["idle"] == 1


def test_dropped_dirty_connection_says_it_was_closed_and_why(db: Path) -> None:
    holder = [pooled.connect(db)]
    holder[0].create_function("f", 0, int)
    with pytest.warns(
        ResourceWarning, match=r"closed: its state could not be reset \(create_function\(\) was called\)"
    ):
        _drop(holder)
    holder = [pooled.connect(db)]
    holder[0].execute("ATTACH DATABASE ':memory:' AS other")
    with pytest.warns(ResourceWarning, match=r"could not be reset \(ATTACH\)"):
        _drop(holder)
    stats = figures(db)
    assert stats["idle"] == 0
    assert stats["discarded_dirty"] == 2


def test_dropped_connection_beyond_the_idle_bound_says_so(db: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SQLITE_POOL_SIZE", "1")
    kept = pooled.connect(db)
    holder = [pooled.connect(db)]
    kept.close()
    with pytest.warns(ResourceWarning, match=r"closed: the pool already keeps 1 idle connection\(s\)"):
        _drop(holder)


# -- when a value cannot be read or written back, the connection is closed, never reused --------------------
@pytest.fixture
def locked_db(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Iterator[Any]:
    """A rollback-journal database and a plain sqlite3 connection able to hold its EXCLUSIVE lock."""
    clean_env.setenv("SQLITE_POOL_WAL", "0")
    db = make_db(tmp_path / "locked.db", rows=1)
    other = sqlite3.connect(db, isolation_level=None)
    yield db, other
    other.close()


def test_a_value_that_cannot_be_noted_makes_the_connection_dirty(
    locked_db: Any,
) -> None:
    db, other = locked_db
    holder = [pooled.connect(db, timeout=0)]
    holder[0].execute("SELECT * FROM t").fetchall()
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        holder[0].execute("PRAGMA max_page_count = 100000")  # reading it needs the file: locked
    other.execute("ROLLBACK")
    with pytest.warns(ResourceWarning, match=r"could not be reset \(a pragma's value could not be read"):
        _drop(holder)
    assert pooled.pool_figures()["databases"][f"{db} [timeout=0]"]["discarded_dirty"] == 1


def test_a_value_that_cannot_be_written_back_closes_the_connection(
    locked_db: Any,
) -> None:
    db, other = locked_db
    conn = pooled.connect(db, timeout=0)
    raw = raw_of(conn)
    conn.execute("PRAGMA max_page_count = 100000")
    other.execute("BEGIN EXCLUSIVE")
    conn.close()  # writing the old value back needs the file, which is locked
    other.execute("ROLLBACK")
    with pytest.raises(sqlite3.ProgrammingError):
        raw.execute("SELECT 1")  # closed, not pooled with max_page_count still changed
    stats = pooled.pool_figures()["databases"][f"{db} [timeout=0]"]
    assert stats["invalidated"] == 1
    assert stats["idle"] == 0


def test_a_pragma_on_a_closed_cursor_raises_what_sqlite3_raises(db: Path) -> None:
    conn = pooled.connect(db)
    cursor = conn.cursor()
    cursor.close()
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed cursor"):
        cursor.execute("PRAGMA foreign_keys = ON")


def test_user_version_is_database_content_not_connection_state(db: Path) -> None:
    conn = pooled.connect(db)
    raw = raw_of(conn)
    conn.execute("PRAGMA user_version = 3")  # a schema-migration helper's bookkeeping
    conn.close()
    again = pooled.connect(db)
    assert raw_of(again) is raw
    assert again.execute("PRAGMA user_version").fetchone() == (3,)  # written to the file, as with sqlite3
    again.execute("PRAGMA temp.user_version = 1")  # the temp database belongs to the connection
    again.close()
    assert figures(db)["discarded_dirty"] == 1
