"""bench/pool_floor.py, the op-cost yardstick: it runs the benchmark's op on one reused connection and
refuses to measure an op it cannot do the way db_utils' everyday path does (no reset, no slow path)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.bench_postgres import _run_on
from bench.pool_floor import FloorPool
from testservers.postgres import PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture
def floor(postgres: PostgresServer) -> Iterator[FloorPool]:
    pool = FloorPool(postgres.dsn)
    yield pool
    pool.close()


def _backend_pid(conn: Any) -> int:
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_the_yardstick_runs_the_benchmark_op_on_one_reused_connection(floor: FloorPool) -> None:
    assert floor.execute(_run_on) == (1,)
    assert floor.execute(_backend_pid) == floor.execute(_backend_pid)


def test_the_yardstick_refuses_an_op_that_would_need_a_reset(floor: FloorPool) -> None:
    def leaves_a_notice(conn: Any) -> None:
        with conn.cursor() as cursor:
            cursor.execute("DO $$ BEGIN RAISE NOTICE 'left behind'; END $$")

    with pytest.raises(RuntimeError, match="no reset"):
        floor.execute(leaves_a_notice)


def test_a_cursor_left_open_is_closed_with_the_lease(floor: FloorPool) -> None:
    kept: list[Any] = []

    def keeps_its_cursor(conn: Any) -> None:
        cursor = conn.cursor()
        cursor.execute("SELECT 1")
        kept.append(cursor)

    floor.execute(keeps_its_cursor)
    assert kept[0].closed


def test_a_connection_idle_past_the_window_is_pinged_first_as_db_utils_does(
    floor: FloorPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.pool_floor as pool_floor

    pinged: list[Any] = []
    real_ping = pool_floor._ping

    def spying_ping(raw: Any) -> None:
        pinged.append(raw)
        real_ping(raw)

    monkeypatch.setattr(pool_floor, "_ping", spying_ping)
    assert floor.execute(_run_on) == (1,)
    assert pinged == []  # used just now: no round trip spent on it
    floor._idle[-1].last_returned -= 1.0  # as if idle past the 0.5 s window (a benchmark round's first op)
    assert floor.execute(_run_on) == (1,)
    assert len(pinged) == 1
    assert pinged[0].autocommit is False  # the ping's autocommit switch is undone
