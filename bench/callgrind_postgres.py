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

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import callgrind
from bench.bench_postgres import (
    FLOOR,
    LIMIT,
    OURS_CONTEXT,
    OURS_EXECUTE,
    OURS_LEGACY,
    SPLIT_QUEUE,
    THREADED,
)
from bench.callgrind import WARM_UP_OPS, count_in

CONTENDERS = (LIMIT, THREADED, OURS_EXECUTE, OURS_CONTEXT, OURS_LEGACY)
# --split: where our instructions go (each minus the next-smaller one is one component's share).
SPLIT_LEND = "split: checkout + return, no query"
SPLIT_HELD = "split: SELECT 1 + rollback on a held handle"
# FLOOR: the same op (``execute_with_pool(_run_on)``) on bench/pool_floor.py's yardstick, the per-op
# guarantees alone, without QueuePool and the registry.
SPLIT = (SPLIT_QUEUE, SPLIT_LEND, SPLIT_HELD, FLOOR)


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
    if name == OURS_CONTEXT:

        def context(_: int) -> object:
            with db_utils.get_pooled_connection() as connection:
                return _run_on(connection)

        return context
    if name == FLOOR:
        from bench.pool_floor import FloorPool

        floor = FloorPool(dsn)
        return lambda _: floor.execute(_run_on)
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


def run(ops: int, top: int, split: bool = False) -> dict[str, Any]:
    from testservers.postgres import launch_postgres

    callgrind.require_valgrind()
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
    return callgrind.save(
        "callgrind_postgres",
        ops,
        results,
        {
            "measure": "instructions executed by the client process inside the measured loop (callgrind Ir); "
            "server work and waits are not counted",
        },
    )


def main(argv: list[str] | None = None) -> None:
    callgrind.main(
        argv,
        description=__doc__,
        default_ops=2000,
        ops_help="measured operations per contender",
        extra_flag=("--split", "also count the components of our op (queue, checkout, query)"),
        child=child,
        run=run,
    )


if __name__ == "__main__":
    main()
