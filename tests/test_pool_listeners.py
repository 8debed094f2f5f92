"""The application's own pool listeners see every checkout, reset and checkin, however they are added.

db_utils checks connections out and back in without SQLAlchemy's per-checkout objects (``lending.lend``)
as long as the pool has no listeners but poolshift's own; a pool that has some goes through
``raw_connection()``, so they run. These tests add listeners to a pool already in use (after its fast
path ran), on the pool itself and on the ``Pool`` class, then remove them, and check from the listeners'
own calls that every later checkout and return dispatched them, through each entry point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.pool import Pool

import db_utils
from tests.pg_helpers import present

pytestmark = pytest.mark.postgres


def _select_one(conn: Any) -> Any:
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()


def _through_execute() -> None:
    assert db_utils.execute_with_pool(_select_one) == (1,)


def _through_context() -> None:
    with db_utils.get_pooled_connection() as conn:
        assert _select_one(conn) == (1,)


def _through_legacy() -> None:
    conn = present(db_utils.get_postgres_connection())
    try:
        assert _select_one(conn) == (1,)
    finally:
        conn.close()


ENTRY_POINTS = {"execute_with_pool": _through_execute, "get_pooled_connection": _through_context,
                "get_postgres_connection": _through_legacy}  # fmt: skip


@pytest.fixture
def pool(pg_pools: Any) -> Pool:
    engine = db_utils.get_connection_pool(pool_size=1, max_overflow=0)
    for use in ENTRY_POINTS.values():  # the fast path has run on this pool before any listener exists
        use()
    return engine.pool


@pytest.mark.parametrize("use", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
@pytest.mark.parametrize("identifier", ["checkout", "checkin", "reset"])
@pytest.mark.parametrize("on", ["pool", "Pool class"])
def test_a_listener_added_to_a_pool_in_use_runs_for_every_later_use_and_stops_when_removed(
    pool: Pool, use: Callable[[], None], identifier: str, on: str
) -> None:
    target: Any = pool if on == "pool" else Pool
    calls: list[str] = []

    def listener(*_: Any) -> None:
        calls.append(identifier)

    event.listen(target, identifier, listener)
    try:
        for _ in range(3):
            use()
    finally:
        event.remove(target, identifier, listener)
    assert calls == [identifier] * 3
    use()
    assert calls == [identifier] * 3  # removed: not called again (and the pool works without it)
    figures = next(iter(db_utils.pool_status()["postgres"].values()))
    assert figures["checked_out"] == 0


def test_the_pool_sqlalchemy_builds_at_engine_dispose_is_watched_as_its_own(pool: Pool) -> None:
    engine = db_utils.get_connection_pool()
    engine.dispose()  # SQLAlchemy replaces the pool with a new one (Pool.recreate)
    assert engine.pool is not pool
    _through_execute()  # the new pool's fast path runs first
    calls: list[str] = []
    event.listen(engine.pool, "checkout", lambda *_: calls.append("checkout"))
    _through_execute()
    _through_legacy()
    assert calls == ["checkout", "checkout"]


def test_a_new_pool_keeps_the_deques_its_listeners_will_land_in_before_anyone_can_reach_it(
    pg_pools: Any,
) -> None:
    # Made while the pool is built (no checkout yet, so no other thread could race to make them), and
    # exactly the deques a later event.listen appends to.
    pool: Any = db_utils.get_connection_pool(pool_size=1, max_overflow=0).pool
    kept = pool.listener_deques
    assert kept is not None

    def listener(*_: Any) -> None:
        pass

    for identifier, index in (("checkout", 0), ("reset", 1), ("checkin", 4)):
        event.listen(pool, identifier, listener)
        try:
            assert listener in kept[index]
        finally:
            event.remove(pool, identifier, listener)
        assert listener not in kept[index]
    event.listen(Pool, "checkin", listener)
    try:
        assert listener in kept[5]
    finally:
        event.remove(Pool, "checkin", listener)
