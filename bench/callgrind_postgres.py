"""Client instructions per PostgreSQL checkout/``SELECT 1``/return, counted by callgrind.

Wall time on a shared 2-core machine moves by tens of percent between runs; the instructions the client
process executes per operation do not (the server's work and the waits for it are not counted: the
server runs outside valgrind). That makes this the measure for cutting the pool's own Python.

Each contender runs in its own child interpreter under ``valgrind --tool=callgrind``, with collection on
only inside the C function ``map_next``: the child runs its operation a few times to warm up (connections,
caches, the pool), then ``list(map(operation, range(N)))``, so exactly the N operations (plus a constant
few instructions of ``map`` per item) are counted. The PostgreSQL server is started by this script, over
TCP with scram auth, as in ``bench_postgres.py``.

    python bench/callgrind_postgres.py [--ops N] [--top K] [--split]

(writes bench/results/callgrind_postgres.json; ``--split`` also counts the parts of our op)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LIMIT = "persistent + rollback"
THREADED = "psycopg2 ThreadedConnectionPool"
OURS_EXECUTE = "db_utils execute_with_pool"
OURS_LEGACY = "db_utils get_postgres_connection+close"
CONTENDERS = (LIMIT, THREADED, OURS_EXECUTE, OURS_LEGACY)
# --split: where our instructions go (each minus the next-smaller one is one component's share).
SPLIT_QUEUE = "split: FairQueuePool get + return"
SPLIT_LEND = "split: checkout + return, no query"
SPLIT_HELD = "split: SELECT 1 + rollback on a held handle"
SPLIT = (SPLIT_QUEUE, SPLIT_LEND, SPLIT_HELD)
WARM_UP_OPS = 20
# Collection is on only inside this C function of CPython: the child's measured loop runs in it.
COLLECT_INSIDE = "map_next"


def operation_for(name: str, dsn: str) -> Callable[[int], object]:
    """The contender's unit of work, set up as in bench_postgres.py (run in the child)."""
    import psycopg2
    import psycopg2.pool

    import db_utils
    from bench.bench_postgres import _run_on

    if name == LIMIT:
        connection = psycopg2.connect(dsn)

        def limit(_: int) -> object:
            row = _run_on(connection)
            connection.rollback()
            return row

        return limit
    if name == THREADED:
        pool = psycopg2.pool.ThreadedConnectionPool(1, 10, dsn)

        def threaded(_: int) -> object:
            connection = pool.getconn()
            try:
                return _run_on(connection)
            finally:
                pool.putconn(connection)

        return threaded
    if name == OURS_EXECUTE:
        return lambda _: db_utils.execute_with_pool(_run_on)
    if name in SPLIT:
        return _split_operation(name)
    if name == OURS_LEGACY:

        def legacy(_: int) -> object:
            connection = db_utils.get_postgres_connection()
            assert connection is not None
            try:
                return _run_on(connection)
            finally:
                connection.close()

        return legacy
    raise SystemExit(f"unknown contender {name!r}")


def _split_operation(name: str) -> Callable[[int], object]:
    """One component of our op alone, on the default pool (see SPLIT)."""
    import db_utils
    from bench.bench_postgres import _run_on
    from db_utils.postgres.lending import lend
    from db_utils.postgres.registry import pool_for

    engine, state = pool_for(None)
    if name == SPLIT_QUEUE:
        pool: Any = engine.pool

        def queue(_: int) -> object:
            pool._do_return_conn(pool._do_get())
            return (1,)

        return queue
    if name == SPLIT_LEND:

        def lend_and_return(_: int) -> object:
            lend(engine, state, None).close()
            return (1,)

        return lend_and_return
    held = db_utils.get_postgres_connection()
    assert held is not None

    def on_held(_: int) -> object:
        row = _run_on(held)
        held.rollback()
        return row

    return on_held


def child(name: str, ops: int) -> None:
    """Run inside valgrind: warm up, then the measured loop inside ``map``."""
    operation = operation_for(name, os.environ["POOLSHIFT_BENCH_DSN"])
    for i in range(WARM_UP_OPS):
        assert operation(i) == (1,), name
    results = list(map(operation, range(ops)))
    assert results == [(1,)] * ops, name


def count(name: str, ops: int, env: dict[str, str], workdir: Path, top: int) -> dict[str, Any]:
    """Run one contender under callgrind; instructions per op and, optionally, its top C functions."""
    return count_in(Path(__file__), (CONTENDERS + SPLIT).index(name), name, ops, env, workdir, top)


def count_in(
    script: Path, index: int, name: str, ops: int, env: dict[str, str], workdir: Path, top: int
) -> dict[str, Any]:
    """Run ``script --child name --ops ops`` under callgrind, counting only inside ``COLLECT_INSIDE``."""
    out = workdir / f"callgrind.{index}.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        f"--toggle-collect={COLLECT_INSIDE}",
        f"--callgrind-out-file={out}",
        sys.executable,
        str(script.resolve()),
        "--child",
        name,
        "--ops",
        str(ops),
    ]
    subprocess.run(command, env=env, check=True, capture_output=True)
    total = _total_instructions(out.read_text())
    result: dict[str, Any] = {"name": name, "instructions": total, "per_op": round(total / ops)}
    if top:
        result["top"] = _top_functions(out, top)
    return result


def _total_instructions(profile: str) -> int:
    match = re.search(r"^(?:summary|totals):\s*(\d+)", profile, re.MULTILINE)
    if match is None:
        raise RuntimeError("callgrind wrote no instruction total")
    return int(match.group(1))


def _top_functions(out: Path, top: int) -> list[str]:
    """The ``top`` C functions by instructions executed in themselves (callgrind_annotate's list)."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(out)], check=True, capture_output=True, text=True
    ).stdout
    lines = [line.strip() for line in text.splitlines() if re.match(r"^\s*[\d,]+ \(", line)]
    return [line for line in lines if "PROGRAM TOTALS" not in line][:top]


def run(ops: int, top: int, split: bool = False) -> dict[str, Any]:
    from bench.common import environment, write_document
    from testservers.postgres import launch_postgres

    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    server = launch_postgres(max_connections=20)
    try:
        env = {**os.environ, "DATABASE_URL": server.url, "POOLSHIFT_BENCH_DSN": server.dsn}
        with tempfile.TemporaryDirectory() as workdir:
            names = CONTENDERS + (SPLIT if split else ())
            results = [count(name, ops, env, Path(workdir), top) for name in names]
    finally:
        server.stop()
    by_name = {r["name"]: r["per_op"] for r in results}
    print(f"\nclient instructions per checkout + SELECT 1 + return ({ops} ops each, callgrind)")
    for r in results:
        print(
            f"  {r['name']:<42} {r['per_op']:>9,}  x{r['per_op'] / by_name[LIMIT]:.2f} of the limit  "
            f"x{r['per_op'] / by_name[THREADED]:.2f} of ThreadedConnectionPool"
        )
        for line in r.get("top", []):
            print(f"      {line}")
    document = {
        "benchmark": "callgrind_postgres",
        "ops": ops,
        **environment(),
        "results": results,
        "notes": {
            "measure": "instructions executed by the client process inside the measured loop (callgrind Ir); "
            "server work and waits are not counted",
        },
    }
    write_document("callgrind_postgres", document)
    return document


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ops", type=int, default=2000, help="measured operations per contender")
    parser.add_argument("--top", type=int, default=0, help="also list each contender's top K C functions")
    parser.add_argument(
        "--split", action="store_true", help="also count the components of our op (queue, checkout, query)"
    )
    parser.add_argument("--child", metavar="CONTENDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.ops)
    else:
        run(args.ops, args.top, args.split)


if __name__ == "__main__":
    main()
