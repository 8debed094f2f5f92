"""tests/pgbouncer_probe.py, the session-state leak probe, at a small size: it must run and read right.

Through a PgBouncer that discards every server session after each transaction (so nothing can leak,
whatever the shim does) the probe must count every call as a success and see nothing; its reading of a
session's state is checked on rows with and without every kind of state.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.pgbouncer_probe import KINDS, Shape, Target, foreign_state, measure
from testservers.pgbouncer import PgBouncerServer

CLEAN_ROW = ('"$user", public', "off", "Etc/UTC", "", "", "", "")


def test_foreign_state_is_empty_for_a_fresh_session() -> None:
    assert foreign_state(CLEAN_ROW) == {}


def test_foreign_state_reads_every_kind_and_the_calls_that_left_it() -> None:
    row = ("s17, public", "on", "Pacific/Chatham", "tmp3,tmp4", "9", "ch5", "ps6,ps8")
    assert foreign_state(row) == {
        "SET": [17],
        "set_session": [0],
        "TimeZone": [0],
        "temp table": [3, 4],
        "advisory": [9],
        "LISTEN": [5],
        "PREPARE": [6, 8],
    }
    assert set(foreign_state(row)) == set(KINDS)


def test_origin_tells_own_earlier_calls_from_other_callers() -> None:
    shape = Shape(processes=2, threads=3, calls=4)
    assert shape.origin(shape.call_id(1, 2, 0), process=1, thread=2) == "same thread, earlier call"
    assert shape.origin(shape.call_id(1, 0, 3), process=1, thread=2) == "other thread"
    assert shape.origin(shape.call_id(0, 2, 3), process=1, thread=2) == "other process"


@pytest.mark.parametrize("api", ["pooled", "legacy"])
def test_a_small_run_through_a_resetting_pgbouncer_succeeds_and_sees_nothing(
    pgbouncer_factory: Callable[..., PgBouncerServer], api: str
) -> None:
    bouncer = pgbouncer_factory(default_pool_size=5, extra_settings={"server_reset_query_always": "1"})
    shape = Shape(processes=2, threads=4, calls=7, setter_every=2)  # every kind left at least once
    summary = measure(shape, api, Target.of(bouncer, bouncer.postgres))
    assert (summary["calls"], summary["ok"], summary["failures"]) == (56, 56, {})
    assert summary["calls_seeing_state_of_an_earlier_call"] == 0
    assert 1 <= summary["peak_server_connections"] <= 5
    assert bouncer.password not in str(summary)
