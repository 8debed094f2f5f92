"""Fork safety: a child gets its own connections and cannot disturb the parent's."""

from __future__ import annotations

import gc
import os

import pytest

import db_utils
from tests.pg_helpers import backend_pid

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def pg(pg_pools):
    return pg_pools


def run_in_child(body) -> str:
    """Fork, run ``body()`` in the child, return what it returned (as text); fail on a child error."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which never returns to pytest
        code = 1
        try:
            os.write(write_end, str(body()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "child process failed"
    return output


def test_child_gets_fresh_connections_and_parent_keeps_working(pg):
    with db_utils.get_pooled_connection() as conn:
        idle_in_parent = backend_pid(conn)
    held = db_utils.get_postgres_connection()  # checked out across the fork
    assert held is not None
    held_backend = backend_pid(held)

    def child_body():
        with db_utils.get_pooled_connection() as conn:
            mine = backend_pid(conn)
        # Worst case: the child closes the inherited checked-out handle and collects the old pool.
        held.close()
        gc.collect()
        return mine

    child_backend = int(run_in_child(child_body))
    assert child_backend not in (idle_in_parent, held_backend)
    # The parent's connections survived the child's cleanup: same backends, still working.
    assert backend_pid(held) == held_backend
    held.close()
    with db_utils.get_pooled_connection() as conn:
        assert backend_pid(conn) in (idle_in_parent, held_backend)
    (stats,) = db_utils.pool_status()["postgres"].values()
    assert stats["invalidated"] == 0


def test_child_counters_start_from_zero():
    with db_utils.get_pooled_connection() as conn:
        backend_pid(conn)

    def child_body():
        (stats,) = db_utils.pool_status()["postgres"].values()
        return stats["checkouts"]

    assert run_in_child(child_body) == "0"
