"""db_utils.sqlite.connect vs sqlite3.connect per call vs one persistent sqlite3 connection.

Legacy code opens a connection, runs one query and closes it, on every call. Three workloads on one real
SQLite file (a 20-table schema, a few thousand rows per table, an index besides each primary key):

* ``select1``: ``SELECT 1``: the bare cost of open + query + close.
* ``lookup``: a point lookup by primary key in one of the 20 tables. A new sqlite3 connection must read and
  parse the whole schema before its first statement and starts with an empty statement cache, so the
  schema's size is part of the per-call cost that pooling removes.
* ``pragmas``: the common helper that sets three PRAGMAs on every connection it opens (``foreign_keys``,
  ``busy_timeout``, ``synchronous``, each to a non-default value), then ``SELECT 1``. Through the pool the
  PRAGMAs run on every call too, and the pool writes the three defaults back on every return.
* ``insert``: one ``INSERT`` + ``commit()`` per call, the write-per-call pattern. Through the pool every
  such call also checkpoints the WAL into the main file on return (what a legacy ``close()`` leaves
  behind), so this row shows what that guarantee costs against the legacy connect + commit + close.

Contenders, each doing exactly what migrated code does: ``sqlite3.connect(path)`` + query + ``close()``
(the before); ``db_utils.sqlite.connect(path)`` + query + ``close()`` (the after, the same three lines);
one ``sqlite3`` connection opened once (the limit: what a pool can approach but not beat). All run in
one process against the same file, interleaved when bench.common offers it.

    python bench/bench_sqlite.py [--quick]
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import db_utils.sqlite  # after the sys.path set-up: runnable from a checkout without install
from bench.common import Harness, Target, parse_args

TABLES = 20
ROWS = 3000
LOOKUP_TABLE = "t07"
INSERT_TABLE = "events"  # the insert workload's table, so the read workloads' tables never change
# Primary keys visited in turn: spread over the table so the lookups do not all hit one cached page.
LOOKUP_IDS = tuple(range(1, ROWS + 1, 37))

# The before, as it runs today: a byte-identical copy of the database that only sqlite3 ever opens, so it
# keeps SQLite's default rollback journal. The pool switches the file it serves to WAL, which changes what
# opening a new sqlite3 connection costs; the same-file per-call contender measures that, and the targets
# are computed against whichever per-call contender is faster, never the flattering one.
BASELINE = "sqlite3.connect per call"
SAME_FILE = "sqlite3.connect per call (pool's WAL file)"
POOLED = "db_utils.sqlite.connect per call"
LIMIT = "sqlite3 persistent connection"

# Operations per round (full mode; --quick divides by 10): about 10-50 ms a round for every contender, so a
# round is long enough to time yet short enough that interleaving spreads the machine's drift evenly.
OPS = {
    "select1": {BASELINE: 1000, SAME_FILE: 1000, POOLED: 3000, LIMIT: 10000},
    "lookup": {BASELINE: 100, SAME_FILE: 100, POOLED: 2000, LIMIT: 4000},
    "pragmas": {BASELINE: 1000, SAME_FILE: 1000, POOLED: 2000, LIMIT: 4000},
    # A commit waits for the disk (fsync): a few milliseconds a call for every contender.
    "insert": {BASELINE: 10, SAME_FILE: 10, POOLED: 10, LIMIT: 10},
}

ROUNDS = 25  # full mode (--quick: 5): cheap enough here, and more rounds steady the paired medians

# The targets: pooled open+query+close at least this many times faster than sqlite3.connect's.
# For ``insert`` the pool must merely not be slower than the legacy per-call write.
TARGETS = {"select1": 3.0, "lookup": 8.0, "pragmas": 3.0, "insert": 1.0}
# The per-call contenders each target is computed against (the slower ratio wins). ``insert`` leaves out
# the same-file contender: its close() skips the checkpoint a legacy close() does only because the pool
# keeps the file open meanwhile, so it measures a state no legacy code is in; the pool does checkpoint.
TARGET_BASELINES = {"insert": (BASELINE,)}

#: What the ``pragmas`` workload's helper runs after every connect (the persistent limit runs them too).
HELPER_PRAGMAS = ("PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 30000", "PRAGMA synchronous = NORMAL")


def expected_row(i: int) -> tuple[Any, ...]:
    """Row ``i`` of every table, as build_database wrote it."""
    return (i, f"user {i}", f"user{i}@example.test", i * 0.5, f"2024-01-{i % 28 + 1:02d}")


def build_database(path: Path) -> None:
    """A schema shaped like a small application's: 20 tables, each with an index besides its key."""
    conn = sqlite3.connect(path)
    try:
        for table in range(TABLES):
            name = f"t{table:02d}"
            conn.execute(
                f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, "
                "score REAL NOT NULL, created TEXT NOT NULL)"
            )
            conn.execute(f"CREATE INDEX {name}_email ON {name} (email)")
            conn.executemany(
                f"INSERT INTO {name} (id, name, email, score, created) VALUES (?, ?, ?, ?, ?)",
                (expected_row(i) for i in range(1, ROWS + 1)),
            )
        conn.execute(f"CREATE TABLE {INSERT_TABLE} (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
        conn.commit()
    finally:
        conn.close()


class Workload(NamedTuple):
    """``sql`` run with ``params()`` after the ``setup`` statements, then ``commit()`` if ``commits``;
    ``expected(row)`` is the row it must return."""

    sql: str
    params: Callable[[], tuple[Any, ...]]
    setup: tuple[str, ...]
    commits: bool
    expected: Callable[[tuple[Any, ...]], tuple[Any, ...]]


def per_call(path: str, workload: Workload, connect: Any) -> Callable[[], Any]:
    """open (+ the helper's setup) + query (+ commit) + close with ``connect``: the legacy pattern, and
    the migrated one."""
    sql, params, setup, commits, _ = workload

    def operation() -> Any:
        conn = connect(path)
        try:
            for statement in setup:
                conn.execute(statement)
            row = conn.execute(sql, params()).fetchone()
            if commits:
                conn.commit()
            return row
        finally:
            conn.close()

    return operation


def contenders(paths: tuple[str, str], workload: Workload) -> dict[str, Callable[[], Any]]:
    """Every way to run the workload; each returns the row it fetched so the answers can be compared."""
    shared, untouched = paths
    persistent = sqlite3.connect(shared)
    sql, params, setup, commits, _ = workload

    def limit() -> Any:
        for statement in setup:
            persistent.execute(statement)
        row = persistent.execute(sql, params()).fetchone()
        if commits:
            persistent.commit()
        return row

    return {
        BASELINE: per_call(untouched, workload, sqlite3.connect),
        SAME_FILE: per_call(shared, workload, sqlite3.connect),
        POOLED: per_call(shared, workload, db_utils.sqlite.connect),
        LIMIT: limit,
    }


def workloads() -> dict[str, Workload]:
    ids = itertools.cycle(LOOKUP_IDS)
    notes = itertools.count()
    lookup_sql = f"SELECT id, name, email, score, created FROM {LOOKUP_TABLE} WHERE id = ?"
    insert_sql = f"INSERT INTO {INSERT_TABLE} (note) VALUES (?) RETURNING note"
    one = (1,)
    return {
        "select1": Workload("SELECT 1", tuple, (), False, lambda row: one),
        # next() on a cycle costs the same for every contender; it keeps each call a different row.
        "lookup": Workload(lookup_sql, lambda: (next(ids),), (), False, lambda row: expected_row(row[0])),
        "pragmas": Workload("SELECT 1", tuple, HELPER_PRAGMAS, False, lambda row: one),
        "insert": Workload(insert_sql, lambda: (f"call {next(notes)}",), (), True, _inserted_note),
    }


def _inserted_note(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """What ``INSERT ... RETURNING note`` must give back: a note the workload wrote."""
    note = row[0] if row else None
    return (note,) if isinstance(note, str) and note.startswith("call ") else ("a note written by the bench",)


def journal_mode(path: str) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def limit_note(share_of_limit: float) -> str:
    """Why a missed target was missed: how close the pool came to the limit no pool can beat."""
    return (
        f"the pooled call reaches {share_of_limit:.0%} of a persistent connection's speed; the rest is "
        "the sqlite3-compatible proxy (thread check, cursor tracking, reset on close, PRAGMA restores)"
    )


def run_workload(harness: Harness, paths: tuple[str, str], workload: str) -> dict[str, Any]:
    chosen = workloads()[workload]
    sql = chosen.sql
    operations = contenders(paths, chosen)
    # Every contender must get the right row (lookups visit a new id each call: check it against its id).
    for name, operation in operations.items():
        row = operation()
        if row is None or row != chosen.expected(row):
            raise RuntimeError(f"{name} read a wrong row for {sql!r}: {row!r}")
    harness.measure_interleaved(operations, ops=OPS[workload])
    # Paired per-round ratios, against the faster of the two per-call contenders: the conservative
    # reading of "the before".
    ratios = {name: harness.paired_ratio(name, POOLED) for name in (BASELINE, SAME_FILE)}
    speedup = min(ratios[name] for name in TARGET_BASELINES.get(workload, (BASELINE, SAME_FILE)))
    share = 1 / harness.paired_ratio(POOLED, LIMIT)
    wanted = TARGETS[workload]
    target = Target.at_least(
        f"{workload}: db_utils.sqlite.connect vs sqlite3.connect per call (x faster)",
        speedup,
        wanted,
        limit_note(share),
    )
    notes = {
        "workload": workload,
        "sql": sql,
        "setup_per_connect": list(chosen.setup),
        "commit_per_call": chosen.commits,
        "schema": f"{TABLES} tables x {ROWS} rows, INTEGER PRIMARY KEY + one secondary index each",
        "journal_mode": {BASELINE: journal_mode(paths[1]), "other contenders": journal_mode(paths[0])},
        "target_ratio": "median of per-round paired ratios vs the faster sqlite3.connect per call contender"
        + (" (legacy file only)" if workload in TARGET_BASELINES else ""),
        "paired_ratios": {name: round(ratio, 4) for name, ratio in ratios.items()},
        "pooled_share_of_limit": round(share, 3),
    }
    document = harness.report(baseline=BASELINE, notes=notes, targets=[target])
    print(f"  db_utils.sqlite reaches {share:.0%} of the persistent-connection limit")
    return document


def run(quick: bool) -> list[dict[str, Any]]:
    documents = []
    with tempfile.TemporaryDirectory(prefix="poolshift-bench-sqlite-") as tmp:
        # Absolute str paths, as a service's configured DB_PATH usually is.
        paths = (str(Path(tmp) / "app.db"), str(Path(tmp) / "legacy.db"))
        build_database(Path(paths[0]))
        shutil.copyfile(paths[0], paths[1])
        for workload in workloads():
            harness = Harness(f"sqlite_{workload}", quick=quick, rounds=ROUNDS)
            documents.append(run_workload(harness, paths, workload))
        figures = db_utils.sqlite.pool_figures()
        print(f"\npool figures: {figures}")
        for label, pool in figures["databases"].items():
            if pool["discarded_dirty"]:  # the pragmas workload must reuse, not discard
                raise RuntimeError(f"{label}: {pool['discarded_dirty']} connections discarded as dirty")
        db_utils.sqlite.dispose()  # before the directory goes: closing lets SQLite remove its -wal file
    return documents


if __name__ == "__main__":
    run(parse_args(__doc__ or "").quick)
