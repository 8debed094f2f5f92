"""The issue's load test: 8 processes x 25 threads through PgBouncer with ``DB_POOL_MODE=pgbouncer``.

PgBouncer in transaction pooling with ``default_pool_size=20`` in front of a PostgreSQL with
``max_connections=50``; every fourth thread leaves session state behind (each kind in turn: SET,
set_session, temp table, advisory lock, LISTEN, PREPARE, TimeZone) and every call first reads what its
session holds (tests/pgbouncer_probe.py). Every call must succeed and write its row, PostgreSQL must never
see more than 20 connections from the bouncer, and no call may find state another call left: the kinds the
mode undoes are gone before COMMIT, the two it refuses (``set_session`` in autocommit mode, LISTEN) are
never sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from tests.pgbouncer_probe import Shape, Target, measure
from testservers.pgbouncer import PgBouncerServer
from testservers.postgres import PostgresServer

PROCESSES, THREADS, CALLS = 8, 25, 10
SERVER_POOL = 20
REFUSED_KINDS = ("set_session", "LISTEN")


@pytest.mark.parametrize("api", ["pooled", "legacy"])
def test_eight_processes_of_25_threads_through_pgbouncer_succeed_and_share_no_session_state(
    postgres_factory: Callable[..., PostgresServer],
    pgbouncer_factory: Callable[..., PgBouncerServer],
    api: str,
) -> None:
    postgres = postgres_factory(max_connections=50)
    bouncer = pgbouncer_factory(
        postgres=postgres,
        pool_mode="transaction",
        default_pool_size=SERVER_POOL,
        max_client_conn=PROCESSES * THREADS + 10,  # processes x (pool size + overflow), plus room
    )
    shape = Shape(processes=PROCESSES, threads=THREADS, calls=CALLS)
    target = Target.of(bouncer, postgres, mode="pgbouncer")
    # The guide's worked example: one process's pool bounds its client connections to the bouncer.
    local_pool = {"DB_POOL_SIZE": "10", "DB_MAX_OVERFLOW": str(THREADS - 10)}
    summary = measure(shape, api, dataclasses.replace(target, env={**target.env, **local_pool}))

    calls = PROCESSES * THREADS * CALLS
    assert (summary["calls"], summary["ok"], summary["rows_written"], summary["failures"]) == (
        calls,
        calls,
        calls,
        {},
    )
    assert 1 <= summary["peak_server_connections"] <= SERVER_POOL
    assert summary["calls_seeing_state_of_an_earlier_call"] == 0, summary["kind_and_origin"]
    assert summary["left_on_server_sessions_after_the_run"] == {"advisory locks": 0, "temp tables": 0}
    expected_refusals = {
        kind: PROCESSES * sum(shape.kind(t, c) == kind for t in range(THREADS) for c in range(CALLS))
        for kind in REFUSED_KINDS
    }
    assert summary["refused"] == expected_refusals
    assert all(expected_refusals.values())
