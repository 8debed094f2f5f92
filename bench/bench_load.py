"""The seed's load test: 100 threads x 10 requests, released together, against max_connections=50.

Each request is one legacy-style unit of work: get a connection, run ``SELECT pg_sleep(0.005)``, commit,
give the connection back. The 5 ms sleep stands for the few milliseconds a real request keeps its
connection (a couple of queries and the application code between them); with a bare ``SELECT 1`` every
request would be over in ~0.1 ms and threads would barely overlap, so the test would not show what
happens when demand for connections exceeds supply, which is its whole point. 5 ms keeps a run short
(1000 requests over 30 connections: ~0.2 s of pure holding time).

Contenders, each on a fresh pool per run against the same dedicated server:

- connect-per-call: ``psycopg2.connect`` per request (the legacy code); with 100 threads and 50 server
  slots some connects are refused ("too many clients already");
- the shim: ``db_utils.get_postgres_connection()`` ... ``close()`` with ``pool_size=10, max_overflow=20,
  min_idle=10`` (the migrated legacy code; a ``None`` return is a failure, its logged reason is the error),
  the pool created and its warm-up finished before the burst, like psycopg_pool's;
- psycopg_pool: ``ConnectionPool(min_size=10, max_size=30, check=ConnectionPool.check_connection)``,
  opened and ``wait()``-ed before the burst as its docs recommend, used as ``with pool.connection()``.

A separate thread polls ``pg_stat_activity`` every ~5 ms on its own connection (not counted) for the
peak number of client connections. Latency percentiles are over successful requests.

    python bench/bench_load.py [--quick]
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg2  # after the sys.path set-up: runnable from a checkout without install

import db_utils
from bench.common import Target, environment, parse_args, print_targets, write_document
from testservers.postgres import PostgresServer, launch_postgres

THREADS = 100
REQUESTS_PER_THREAD = 10
MAX_CONNECTIONS = 50
POOL_SIZE, MAX_OVERFLOW = 10, 20
POLL_INTERVAL = 0.005
WORK_SQL = "SELECT pg_sleep(0.005)"

CONNECT = "connect-per-call"
SHIM = "db_utils shim (min 10, 10 + 20 overflow)"
PSYCOPG_POOL = "psycopg_pool (min 10, max 30)"

Request = Callable[[], None]


class ShimReturnedNone(Exception):
    """get_postgres_connection() returned None: the legacy contract's failure signal."""


@dataclass
class RunResult:
    """One contender's run: what each request did and what the server saw."""

    name: str
    wall_s: float
    latencies_s: list[float]
    failures: Counter[str]
    peak_connections: int
    polls: int

    @property
    def successes(self) -> int:
        return len(self.latencies_s)

    @property
    def throughput(self) -> float:
        return self.successes / self.wall_s

    def percentile(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class ConnectionPoller:
    """Polls pg_stat_activity every ~5 ms from its own thread and keeps the peak client count."""

    server: PostgresServer
    peak: int = 0
    polls: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self, ready: threading.Event) -> None:
        conn = psycopg2.connect(self.server.dsn)
        conn.autocommit = True
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()"
        )
        try:
            with conn.cursor() as cursor:
                ready.set()
                while not self._stop.is_set():
                    cursor.execute(sql, (self.server.database,))
                    self.peak = max(self.peak, cursor.fetchone()[0])
                    self.polls += 1
                    self._stop.wait(POLL_INTERVAL)
        finally:
            conn.close()

    @contextmanager
    def running(self) -> Iterator[ConnectionPoller]:
        ready = threading.Event()
        thread = threading.Thread(target=self.run, args=(ready,), name="pg-poller", daemon=True)
        thread.start()
        ready.wait(30)
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(30)


class ErrorCollector(logging.Handler):
    """Keeps the last error db_utils.legacy logged per thread: the reason behind a ``None``."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: dict[int, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.last[threading.get_ident()] = record.getMessage()


def error_key(error: BaseException, password: str) -> str:
    """``Class: first line of the message``, password removed (a driver may echo its DSN)."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}".replace(password, "***")


def run_burst(name: str, server: PostgresServer, request: Request) -> RunResult:
    """100 threads wait at a barrier, then each runs 10 requests back to back."""
    barrier = threading.Barrier(THREADS + 1)
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    lock = threading.Lock()  # guards latencies/failures: appended to by 100 threads

    def worker() -> None:
        barrier.wait()
        for _ in range(REQUESTS_PER_THREAD):
            started = time.perf_counter()
            try:
                request()
            except Exception as error:
                with lock:
                    failures[error_key(error, server.password)] += 1
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker, name=f"load-{i}") for i in range(THREADS)]
    for thread in threads:
        thread.start()
    with ConnectionPoller(server).running() as poller:
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
    return RunResult(name, wall, latencies, failures, poller.peak, poller.polls)


def connect_per_call(server: PostgresServer) -> Request:
    def request() -> None:
        conn = psycopg2.connect(server.dsn)
        try:
            with conn.cursor() as cursor:
                cursor.execute(WORK_SQL)
            conn.commit()
        finally:
            conn.close()

    return request


def shim(collector: ErrorCollector) -> Request:
    def request() -> None:
        conn = db_utils.get_postgres_connection()
        if conn is None:
            raise ShimReturnedNone(collector.last.get(threading.get_ident(), "no reason logged"))
        try:
            with conn.cursor() as cursor:
                cursor.execute(WORK_SQL)
            conn.commit()
        finally:
            conn.close()

    return request


def psycopg_pool_request(pool: Any) -> Request:
    def request() -> None:
        with pool.connection() as conn:
            conn.execute(WORK_SQL)

    return request


def wait_for_idle_server(server: PostgresServer, timeout: float = 30.0) -> None:
    """Backends of closed connections exit asynchronously: start each run from an empty server."""
    deadline = time.monotonic() + timeout
    while server.backend_count() > 0 and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_for_warm_up(idle: int, timeout: float = 60.0) -> None:
    """Until the shim's pool has ``idle`` connections open, as its public figures (pool_status) say."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (figures,) = db_utils.pool_status()["postgres"].values()
        if figures["idle"] >= idle:
            return
        time.sleep(0.01)
    raise RuntimeError(f"the shim's warm-up did not open {idle} connections within {timeout:g} s")


def run_contender(name: str, server: PostgresServer, collector: ErrorCollector) -> RunResult:
    wait_for_idle_server(server)
    if name == CONNECT:
        return run_burst(name, server, connect_per_call(server))
    if name == SHIM:
        db_utils.dispose_pools()
        # The same min/max as psycopg_pool's, and like its wait(): the warm-up is done before the burst.
        db_utils.get_connection_pool(pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, min_idle=POOL_SIZE)
        wait_for_warm_up(POOL_SIZE)
        try:
            return run_burst(name, server, shim(collector))
        finally:
            db_utils.dispose_pools()
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(
        server.libpq_url,
        min_size=POOL_SIZE,
        max_size=POOL_SIZE + MAX_OVERFLOW,
        check=ConnectionPool.check_connection,
        open=True,
    )
    try:
        pool.wait()
        return run_burst(name, server, psycopg_pool_request(pool))
    finally:
        pool.close()


def summarize(name: str, runs: list[RunResult]) -> dict[str, Any]:
    """One contender over all its runs: medians across runs, latency quartiles over all requests."""
    latencies = sorted(lat for run in runs for lat in run.latencies_s)
    failures: Counter[str] = Counter()
    for run in runs:
        failures.update(run.failures)
    q1, median, q3 = (
        statistics.quantiles(latencies, n=4, method="inclusive") if len(latencies) > 1 else [float("nan")] * 3
    )
    requests = THREADS * REQUESTS_PER_THREAD
    return {
        "name": name,
        "median_s": median,
        "q1_s": q1,
        "q3_s": q3,
        "runs": len(runs),
        "requests_per_run": requests,
        "success_rate": sum(r.successes for r in runs) / (requests * len(runs)),
        "successes": sum(r.successes for r in runs),
        "failures": dict(failures.most_common()),
        "throughput_rps": statistics.median(r.throughput for r in runs),
        "p50_s": statistics.median(r.percentile(0.50) for r in runs),
        "p99_s": statistics.median(r.percentile(0.99) for r in runs),
        "max_s": max(r.percentile(1.0) for r in runs),
        "peak_server_connections": max(r.peak_connections for r in runs),
        "per_run": [
            {
                "wall_s": r.wall_s,
                "successes": r.successes,
                "throughput_rps": r.throughput,
                "p50_s": r.percentile(0.5),
                "p99_s": r.percentile(0.99),
                "max_s": r.percentile(1.0),
                "peak_server_connections": r.peak_connections,
                "polls": r.polls,
            }
            for r in runs
        ],
    }


def targets(by_name: dict[str, dict[str, Any]]) -> list[Target]:
    ours, peer = by_name[SHIM], by_name[PSYCOPG_POOL]
    limit_capacity = "the pool is capped at 30 connections; beyond that requests queue"
    return [
        Target.at_least("shim success rate", ours["success_rate"], 1.0, "see failures"),
        Target.at_most("shim peak server connections", ours["peak_server_connections"], 30, limit_capacity),
        Target.at_least(
            "shim throughput / psycopg_pool throughput",
            ours["throughput_rps"] / peer["throughput_rps"],
            1.0,
            "both had min 10 open before the burst; the 20 more connections are opened by the callers "
            "that found none idle, at most DB_POOL_MAX_CONNECTING at once, and SQLAlchemy's "
            "checkout/checkin costs more Python per request under the GIL",
        ),
        Target.at_most(
            "shim p99 / psycopg_pool p99",
            ours["p99_s"] / peer["p99_s"],
            1.0,
            "waiters are served in FIFO order (as psycopg_pool does); a caller that opens a connection "
            "waits for its own handshake (or its turn under DB_POOL_MAX_CONNECTING) while psycopg_pool's "
            "callers take whichever connection is free first, returned or newly opened",
        ),
    ]


def print_summary(results: list[dict[str, Any]]) -> None:
    print(f"\nload: {THREADS} threads x {REQUESTS_PER_THREAD} requests, max_connections={MAX_CONNECTIONS}")
    for r in results:
        print(
            f"  {r['name']:<32} success {r['success_rate']:7.1%}  {r['throughput_rps']:8.0f} req/s  "
            f"p50 {r['p50_s'] * 1e3:7.1f} ms  p99 {r['p99_s'] * 1e3:7.1f} ms  "
            f"max {r['max_s'] * 1e3:7.1f} ms  peak conns {r['peak_server_connections']}"
        )
        for error, count in r["failures"].items():
            print(f"      {count:5d} x {error}")


@contextmanager
def shim_environment(server: PostgresServer) -> Iterator[ErrorCollector]:
    """DATABASE_URL at the load server, and a handler catching why get_postgres_connection gave None."""
    previous = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = server.url
    collector = ErrorCollector()
    legacy_logger = logging.getLogger("db_utils.legacy")
    legacy_logger.addHandler(collector)
    propagate, legacy_logger.propagate = legacy_logger.propagate, False  # 1000 lines on stderr otherwise
    try:
        yield collector
    finally:
        legacy_logger.removeHandler(collector)
        legacy_logger.propagate = propagate
        db_utils.dispose_pools()
        if previous is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = previous


def run(quick: bool) -> dict[str, Any]:
    repetitions = 1 if quick else 5
    names = [CONNECT, SHIM, PSYCOPG_POOL]
    runs: dict[str, list[RunResult]] = {name: [] for name in names}
    server = launch_postgres(max_connections=MAX_CONNECTIONS)
    try:
        with shim_environment(server) as collector:
            for repetition in range(repetitions):
                shift = repetition % len(names)  # rotate the order: no contender always runs first
                for name in names[shift:] + names[:shift]:
                    runs[name].append(run_contender(name, server, collector))
    finally:
        server.stop()
    results = [summarize(name, runs[name]) for name in names]
    found = targets({r["name"]: r for r in results})
    print_summary(results)
    print_targets(found)
    document = {
        "benchmark": "load",
        "quick": quick,
        "baseline": CONNECT,
        **environment(),
        "results": results,
        "notes": {
            "scenario": f"{THREADS} threads x {REQUESTS_PER_THREAD} requests released by a barrier; "
            f"max_connections={MAX_CONNECTIONS}; {repetitions} run(s) per contender, order rotated",
            "work": f"{WORK_SQL} + commit per request (a request holding its connection ~5 ms)",
            "latency": "successful requests only; median_s/q1_s/q3_s over all runs' requests",
            "peak_server_connections": "max of pg_stat_activity client backends polled every ~5 ms by a "
            "separate thread (its own connection excluded)",
            SHIM: "get_postgres_connection() ... close(); pool created per run with min_idle=10 and its "
            "warm-up waited for (pool_status idle), like psycopg_pool's wait()",
            PSYCOPG_POOL: "ConnectionPool(min_size=10, max_size=30, check=ConnectionPool.check_connection); "
            "opened and wait()-ed before the burst, as its docs recommend at application start",
        },
        "targets": [vars(t) for t in found],
    }
    write_document("load", document)
    return document


if __name__ == "__main__":
    run(parse_args(__doc__ or "").quick)
