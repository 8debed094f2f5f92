"""PostgreSQL op cost: db_utils' pooled calls against connect-per-call, the persistent limit and peer pools.

Every contender does the same unit of work, ``SELECT 1`` and fetch the row, against one throwaway
PostgreSQL server (TCP on 127.0.0.1, scram-sha-256 auth, like production) started by this script, in the
same process, in interleaved rounds (see bench/common.py), with the benchmark process and the server
pinned to separate CPUs (bench/placement.py; ``--unpinned`` leaves placement to the scheduler). Each one
is set up the way its documentation recommends for production; the choices are recorded in the JSON
``notes``. Beside them runs a yardstick, not a pool: bench/pool_floor.py, db_utils' per-op guarantees
alone, whose ratios say what limits ours.

Round trips per op (psycopg2 and psycopg 3 both send ``BEGIN`` as its own statement):

- persistent (no rollback): 1 (``SELECT``; the transaction stays open forever: the floor, not a
  practice anyone should follow);
- persistent + rollback, ThreadedConnectionPool, ours: 3 (``BEGIN``, ``SELECT``, ``ROLLBACK``/``COMMIT``);
- SQLAlchemy with pre_ping, psycopg_pool with ``check``, DBUtils with a ping query: 4 (one more to validate).

    python bench/bench_postgres.py [--quick] [--unpinned]
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # after the sys.path set-up: runnable from a checkout without install
import psycopg2.pool
from sqlalchemy import create_engine

import db_utils
from bench.common import RESULTS_DIR, Harness, Target, parse_args
from bench.placement import place_apart
from testservers.postgres import PostgresServer, launch_postgres

CONNECT_PER_CALL = "psycopg2.connect per call"
PERSISTENT = "persistent (no rollback)"
LIMIT = "persistent + rollback"
SQLALCHEMY = "SQLAlchemy raw_connection (pre_ping)"
THREADED = "psycopg2 ThreadedConnectionPool"
PSYCOPG_POOL = "psycopg_pool ConnectionPool (check)"
DBUTILS = "DBUtils PooledDB (ping SELECT 1)"
OURS_EXECUTE = "db_utils execute_with_pool"
OURS_CONTEXT = "db_utils get_pooled_connection"
OURS_LEGACY = "db_utils get_postgres_connection+close"
# Not a pool anyone uses: bench/pool_floor.py, db_utils' per-op guarantees alone, for what limits ours.
FLOOR = "floor: the guarantees alone (pool_floor.py)"
# bench/callgrind_postgres.py --split: QueuePool's checkout and return alone, no query, no guarantee.
SPLIT_QUEUE = "split: FairQueuePool get + return"

OURS = (OURS_EXECUTE, OURS_CONTEXT, OURS_LEGACY)
PEER_POOLS = (SQLALCHEMY, THREADED, PSYCOPG_POOL, DBUTILS)

# Full-mode ops per round; a connect costs ~100x a pooled op (TCP + scram + backend fork), so it gets
# fewer ops to keep its rounds about as long as the others'. Many short rounds rather than a few long
# ones: paired ratios compare rounds that ran close together, which is what cancels background load.
OPS = 300
OPS_CONNECT = 10
ROUNDS = 41

NOTES = {
    "unit of work": "SELECT 1 + fetchone through a cursor",
    "server": "testservers.postgres.launch_postgres: PostgreSQL over TCP 127.0.0.1, scram-sha-256",
    PERSISTENT: "one psycopg2 connection; its transaction is never ended (the lower bound, 1 round trip)",
    LIMIT: "one psycopg2 connection, rollback after each op: what a pool can at best approach",
    SQLALCHEMY: "create_engine(url, pool_pre_ping=True).raw_connection() ... close(); QueuePool defaults, "
    "rollback on return",
    THREADED: "getconn()/putconn(); putconn rolls back an open transaction; no validation option exists",
    PSYCOPG_POOL: "ConnectionPool(min_size=1, max_size=10, check=ConnectionPool.check_connection), used as "
    "`with pool.connection() as conn:` (commit on exit): the docs' 'Connection quality' section recommends "
    "`check` to validate on checkout; without it a broken connection reaches the caller",
    DBUTILS: "PooledDB(psycopg2, maxconnections=10, ping='SELECT 1', reset=True): psycopg2 has no ping(), so "
    "the docs' SQL-statement ping checks each connection taken from the pool; reset=True rolls back on "
    "return",
    OURS_EXECUTE: "execute_with_pool(op): commit on success; default settings (pre_ping on, validation of "
    "connections idle >= ping_after=0.5 s, as HikariCP)",
    OURS_CONTEXT: "with get_pooled_connection() as conn: ... (commit on exit)",
    OURS_LEGACY: "conn = get_postgres_connection(); ...; conn.close() (rollback on return)",
    FLOOR: "bench/pool_floor.py's FloorPool(dsn).execute(op): the yardstick, not a pool; what db_utils' "
    "per-op guarantees cost without QueuePool and the registry",
}


def select_one(cursor: Any) -> Any:
    cursor.execute("SELECT 1")
    return cursor.fetchone()


def _run_on(connection: Any) -> Any:
    with connection.cursor() as cursor:
        return select_one(cursor)


def baseline_contenders(server: PostgresServer) -> dict[str, Callable[[], object]]:
    """Connect-per-call and the two persistent-connection limits."""
    dsn = server.dsn
    persistent = psycopg2.connect(dsn)
    per_op_rollback = psycopg2.connect(dsn)

    def connect_per_call() -> object:
        connection = psycopg2.connect(dsn)
        try:
            return _run_on(connection)
        finally:
            connection.close()

    def no_rollback() -> object:
        return _run_on(persistent)

    def with_rollback() -> object:
        row = _run_on(per_op_rollback)
        per_op_rollback.rollback()
        return row

    return {CONNECT_PER_CALL: connect_per_call, PERSISTENT: no_rollback, LIMIT: with_rollback}


def peer_contenders(server: PostgresServer) -> tuple[dict[str, Callable[[], object]], list[Any]]:
    """The pools a user would otherwise pick, each configured as its docs recommend; also what to close."""
    from dbutils.pooled_db import PooledDB  # type: ignore[import-untyped]
    from psycopg_pool import ConnectionPool

    engine = create_engine(server.url, pool_pre_ping=True)
    threaded = psycopg2.pool.ThreadedConnectionPool(1, 10, server.dsn)
    psycopg3 = ConnectionPool(
        server.libpq_url, min_size=1, max_size=10, check=ConnectionPool.check_connection, open=True
    )
    psycopg3.wait()
    dbutils_pool = PooledDB(psycopg2, maxconnections=10, ping="SELECT 1", reset=True, dsn=server.dsn)

    def sqlalchemy_raw() -> object:
        connection = engine.raw_connection()
        try:
            return _run_on(connection)
        finally:
            connection.close()

    def threaded_pool() -> object:
        connection = threaded.getconn()
        try:
            return _run_on(connection)
        finally:
            threaded.putconn(connection)

    def psycopg_pool_op() -> object:
        with psycopg3.connection() as connection:
            return connection.execute("SELECT 1").fetchone()

    def dbutils_op() -> object:
        connection = dbutils_pool.connection()
        try:
            cursor = connection.cursor()
            try:
                return select_one(cursor)
            finally:
                cursor.close()
        finally:
            connection.close()

    contenders = {
        SQLALCHEMY: sqlalchemy_raw,
        THREADED: threaded_pool,
        PSYCOPG_POOL: psycopg_pool_op,
        DBUTILS: dbutils_op,
    }
    closers = [engine.dispose, threaded.closeall, psycopg3.close, dbutils_pool.close]
    return contenders, closers


def our_contenders() -> dict[str, Callable[[], object]]:
    """db_utils' three entry points, default settings (DATABASE_URL points at the server)."""

    def execute() -> object:
        return db_utils.execute_with_pool(_run_on)

    def context() -> object:
        with db_utils.get_pooled_connection() as connection:
            return _run_on(connection)

    def legacy() -> object:
        connection = db_utils.get_postgres_connection()
        assert connection is not None
        try:
            return _run_on(connection)
        finally:
            connection.close()

    return {OURS_EXECUTE: execute, OURS_CONTEXT: context, OURS_LEGACY: legacy}


def floor_contender(server: PostgresServer) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    """The yardstick (bench/pool_floor.py) doing the same op as ``execute_with_pool``; and its close."""
    from bench.pool_floor import FloorPool

    floor = FloorPool(server.dsn)
    return {FLOOR: lambda: floor.execute(_run_on)}, floor.close


def instruction_counts() -> dict[str, int]:
    """Client instructions per op from the latest ``bench/callgrind_postgres.py --split`` (empty if none)."""
    try:
        document = json.loads((RESULTS_DIR / "callgrind_postgres.json").read_text())
        return {str(result["name"]): int(result["per_op"]) for result in document["results"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _what_the_floor_says(harness: Harness, reference: str) -> str:
    """The yardstick's own ratio to ``reference`` in this run: how close the guarantees alone get."""
    return (
        "in this run the yardstick (bench/pool_floor.py: the idle-socket poll, the lease registry with the "
        "borrower's call site, the handle and its cursor tracking, the read-back, written as directly as "
        f"Python allows, without QueuePool and the registry) measured "
        f"{harness.paired_ratio(FLOOR, reference):.2f}x {reference}, with "
        f"{_cpu_extra_us(harness, FLOOR, reference):+.1f} us client CPU per op"
    )


def _what_instructions_say(counts: dict[str, int], ours: str, peer: str) -> str:
    """The instruction counts behind a missed op-cost target, with what they show (after
    :func:`_what_the_floor_says`, which says what the yardstick is)."""
    counted = ours  # both scripts name our contenders alike
    if not {LIMIT, THREADED, FLOOR, counted} <= counts.keys():
        return "instructions per piece: bench/callgrind_postgres.py --split, bench/README.md (PostgreSQL)"
    floor = counts[FLOOR]
    text = (
        f"client instructions per op (bench/callgrind_postgres.py --split): the limit {counts[LIMIT]:,}, "
        f"{THREADED} {counts[THREADED]:,}, ours {counts[counted]:,}, the yardstick {floor:,}; the rest of "
        "ours is building the same guarantees on QueuePool (records, events, recycling and invalidation "
        "tests) and the pool registry, in many small pieces (bench/README.md, PostgreSQL)"
    )
    if peer == THREADED and floor > counts[THREADED]:
        text += f"; in CPython the guarantees alone cost more than {THREADED}'s whole op"
        budget = counts[THREADED] - counts[LIMIT]
        queue = counts.get(SPLIT_QUEUE)
        if queue is not None and budget > 0:
            text += (
                f": {THREADED} spends {budget:,} instructions over the limit in all, the yardstick "
                f"{floor - counts[LIMIT]:,}; QueuePool's own get + return alone (the design the issue "
                f"keeps) takes {queue:,}, {100 * queue / budget:.0f}% of that budget before any guarantee"
            )
    return text


def targets(harness: Harness) -> list[Target]:
    """The issue's three targets, for each of our entry points, from paired (same-round) ratios."""
    fastest_peer = min(PEER_POOLS, key=lambda name: harness.result(name).median_s)
    limit_speedup = harness.paired_ratio(CONNECT_PER_CALL, LIMIT)
    connect_ms = harness.result(CONNECT_PER_CALL).median_s * 1e3
    counts = instruction_counts()
    found: list[Target] = []
    for ours in OURS:
        found.append(
            Target.at_most(
                f"{ours} within 1.15x of {LIMIT} (validation on)",
                harness.paired_ratio(ours, LIMIT),
                1.15,
                f"same round trips; client CPU per op is {_cpu_extra_us(harness, ours, LIMIT):+.1f} us over "
                f"the limit; {_what_the_floor_says(harness, LIMIT)}; "
                f"{_what_instructions_say(counts, ours, LIMIT)}",
            )
        )
        found.append(
            Target.at_least(
                f"{ours} >= 100x faster than {CONNECT_PER_CALL}",
                harness.paired_ratio(CONNECT_PER_CALL, ours),
                100.0,
                f"a connect costs only {connect_ms:.1f} ms here (loopback TCP, no TLS): even the "
                f"persistent + rollback limit is only {limit_speedup:.0f}x faster than connect-per-call",
            )
        )
        found.append(
            Target.at_most(
                f"{ours} no slower than the fastest peer pool ({fastest_peer})",
                harness.paired_ratio(ours, fastest_peer),
                1.0,
                f"{fastest_peer} validates nothing and resets nothing but the transaction; ours spends "
                f"{_cpu_extra_us(harness, ours, fastest_peer):+.1f} us more client CPU per op on what it "
                f"does not do; {_what_the_floor_says(harness, fastest_peer)}; "
                f"{_what_instructions_say(counts, ours, fastest_peer)}",
            )
        )
    return found


def best_round_ratios(harness: Harness) -> dict[str, float]:
    """Fastest round of ours / fastest round of the limit: the comparison least touched by other load."""
    limit = harness.result(LIMIT).min_s or float("nan")
    return {ours: round((harness.result(ours).min_s or float("nan")) / limit, 4) for ours in OURS}


def _cpu_extra_us(harness: Harness, name: str, reference: str) -> float:
    ours, ref = harness.result(name).cpu_s, harness.result(reference).cpu_s
    return (ours - ref) * 1e6 if ours is not None and ref is not None else float("nan")


@contextmanager
def database_url(url: str) -> Iterator[None]:
    """Point db_utils' default URL at the benchmark server for the run, then restore the environment."""
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    try:
        yield
    finally:
        db_utils.dispose_pools()
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous


def run(quick: bool, pinned: bool = True) -> dict[str, Any]:
    server = launch_postgres(max_connections=100)
    closers: list[Any] = []
    try:
        if pinned:  # before any contender opens a connection or starts a thread (bench/placement.py)
            place_apart(server.process.pid)
        with database_url(server.url):
            db_utils.dispose_pools()
            contenders = baseline_contenders(server)
            peers, closers = peer_contenders(server)
            contenders.update(peers)
            contenders.update(our_contenders())
            floor, close_floor = floor_contender(server)
            contenders.update(floor)
            closers.append(close_floor)
            for name, operation in contenders.items():
                assert operation() == (1,), name  # every contender really runs the query
            harness = Harness("postgres", quick=quick, ops=OPS, rounds=ROUNDS)
            harness.measure_interleaved(contenders, ops={CONNECT_PER_CALL: OPS_CONNECT})
            found = targets(harness)
            status = db_utils.pool_status()["postgres"]
            notes: dict[str, Any] = {
                **NOTES,
                "best_round_ratio_vs_limit": best_round_ratios(harness),
                "pool_status_after": status,
            }
            document = harness.report(baseline=CONNECT_PER_CALL, notes=notes, targets=found)
    finally:
        for close in closers:
            close()
        server.stop()
    return document


if __name__ == "__main__":
    arguments = parse_args(__doc__ or "")
    run(arguments.quick, pinned=not arguments.unpinned)
