"""Instructions per SQLite open + ``SELECT 1`` + close, counted by callgrind: sqlite3 vs db_utils.sqlite.

Wall time on a shared 2-core machine moves by tens of percent between runs; the instructions a process
executes per operation do not. That makes this the measure for cutting the pooled path's own Python, and
for saying what is left over a persistent connection, the floor no pool can beat. Only user-space
instructions are counted: the system calls ``sqlite3.connect`` makes (open, fstat, locks, reads) cost
kernel time callgrind does not see, so the wall-time ratio of bench_sqlite.py is what the target is
judged on; this script says where the pooled call's own instructions go.

Same method as bench/callgrind_postgres.py (whose helper it uses): each contender runs in its own child
interpreter under ``valgrind --tool=callgrind`` with collection on only inside CPython's ``map_next``; the
child warms up, then runs ``list(map(operation, range(N)))``. The database is bench_sqlite.py's (20 tables,
built once by the parent, with the byte-identical copy the before opens). ``--split`` also counts the
pooled call's components one by one, each in its own ``map`` loop (each minus the next-smaller one is one
component's share; see SPLIT).

    python bench/callgrind_sqlite.py [--ops N] [--top K] [--split]

(writes bench/results/callgrind_sqlite.json)
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import callgrind
from bench.callgrind import WARM_UP_OPS, count_in

BASELINE = "sqlite3.connect per call"
POOLED = "db_utils.sqlite.connect per call"
LIMIT = "sqlite3 persistent connection"
CONTENDERS = (BASELINE, POOLED, LIMIT)
# --split: the pooled call's components, largest first.
SPLIT_LEND = "split: connect() + close(), no query"
SPLIT_POOL = "split: SQLitePool checkout + checkin"
SPLIT_STAT = "split: file_identity(path)"
SPLIT_HELD = "split: SELECT 1 on a held pooled connection"
SPLIT = (SPLIT_LEND, SPLIT_POOL, SPLIT_STAT, SPLIT_HELD)
SQL = "SELECT 1"


def operation_for(name: str, shared: str, legacy: str) -> Callable[[int], object]:
    """The contender's unit of work, as bench_sqlite.py's ``select1`` (run in the child)."""
    import db_utils.sqlite

    if name == BASELINE:

        def before(_: int) -> object:
            conn = sqlite3.connect(legacy)
            try:
                return conn.execute(SQL).fetchone()
            finally:
                conn.close()

        return before
    if name == POOLED:

        def after(_: int) -> object:
            conn = db_utils.sqlite.connect(shared)
            try:
                return conn.execute(SQL).fetchone()
            finally:
                conn.close()

        return after
    if name == LIMIT:
        persistent = sqlite3.connect(shared)
        return lambda _: persistent.execute(SQL).fetchone()
    return _split_operation(name, shared)


def _split_operation(name: str, shared: str) -> Callable[[int], object]:
    """One component of the pooled call alone, on the pool the pooled contender uses (see SPLIT)."""
    import db_utils.sqlite
    from db_utils.sqlite.target import file_identity

    held = db_utils.sqlite.connect(shared)
    held.execute(SQL).fetchone()  # the pool exists, the file is in WAL mode and its -wal is noted
    if name == SPLIT_HELD:
        return lambda _: held.execute(SQL).fetchone()
    pool = held._pool  # type: ignore[attr-defined]
    held.close()
    if name == SPLIT_LEND:

        def lend(_: int) -> object:
            db_utils.sqlite.connect(shared).close()
            return (1,)

        return lend
    if name == SPLIT_POOL:

        def checkout_checkin(_: int) -> object:
            pool.checkin(pool.checkout())
            return (1,)

        return checkout_checkin
    if name == SPLIT_STAT:
        path = pool.target.file_path
        return lambda _: (1,) if file_identity(path) is not None else None
    raise SystemExit(f"unknown contender {name!r}")


def child(name: str, ops: int) -> None:
    """Run inside valgrind: warm up, then the measured loop inside ``map``."""
    operation = operation_for(name, os.environ["POOLSHIFT_BENCH_DB"], os.environ["POOLSHIFT_BENCH_LEGACY_DB"])
    for i in range(WARM_UP_OPS):
        assert operation(i) == (1,), name
    results = list(map(operation, range(ops)))
    assert results == [(1,)] * ops, name


def count(name: str, ops: int, env: dict[str, str], workdir: Path, top: int) -> dict[str, Any]:
    """Run one contender under callgrind; instructions per op and, optionally, its top C functions."""
    return count_in(Path(__file__), (CONTENDERS + SPLIT).index(name), name, ops, env, workdir, top)


def run(ops: int, top: int, split: bool) -> dict[str, Any]:
    from bench.bench_sqlite import build_database

    callgrind.require_valgrind()
    names = CONTENDERS + (SPLIT if split else ())
    with tempfile.TemporaryDirectory(prefix="poolshift-callgrind-sqlite-") as tmp:
        shared, legacy = Path(tmp) / "app.db", Path(tmp) / "legacy.db"
        build_database(shared)
        shutil.copyfile(shared, legacy)
        env = {**os.environ, "POOLSHIFT_BENCH_DB": str(shared), "POOLSHIFT_BENCH_LEGACY_DB": str(legacy)}
        results = [count(name, ops, env, Path(tmp), top) for name in names]
    by_name = {r["name"]: r["per_op"] for r in results}
    print(f"\ninstructions per open + {SQL} + close ({ops} ops each, callgrind)")
    for r in results:
        versus = ""
        if r["name"] in CONTENDERS:
            over = r["per_op"] - by_name[LIMIT]
            versus = f"  {over:>+9,} vs {LIMIT}  {by_name[BASELINE] / r['per_op']:.2f}x fewer than sqlite3"
        print(f"  {r['name']:<46} {r['per_op']:>9,}{versus}")
        for line in r.get("top", []):
            print(f"      {line}")
    return callgrind.save(
        "callgrind_sqlite",
        ops,
        results,
        {
            "sql": SQL,
            "measure": "user-space instructions executed inside the measured loop (callgrind Ir); kernel "
            "work (sqlite3.connect's open/fstat/lock system calls) is not counted",
        },
    )


def main(argv: list[str] | None = None) -> None:
    callgrind.main(
        argv,
        description=__doc__,
        default_ops=2000,
        ops_help="measured operations per contender",
        extra_flag=("--split", "also count the pooled call's components"),
        child=child,
        run=run,
    )


if __name__ == "__main__":
    main()
