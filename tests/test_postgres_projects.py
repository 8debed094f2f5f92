"""Real-shaped legacy projects pass their own suites identically before and after ``poolshift migrate --all``,
every connect site routed to db_utils, within the pool bound of server connections.

Each project and what it proves is listed in tests/postgres_projects/driver.py (``PROJECTS``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.postgres_projects.driver import PROJECTS, ServerLog, _connect_calls, run_project
from testservers.postgres import PostgresServer


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PROJECTS))
def test_project_keeps_its_test_outcomes_after_migration(
    name: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    result = run_project(PROJECTS[name], postgres, tmp_path)
    print(result.summary())  # shown with -s or -rA: both connection figures, legacy and migrated


def test_leftover_connect_calls_are_found_through_every_import_style() -> None:
    # The driver's "nothing left unreported" check must not be vacuous.
    source = """
import psycopg2
import psycopg2 as psycopg
from psycopg2 import connect, connect as pg_connect
import db_utils.postgres

psycopg2.connect("")
psycopg.connect(host="h")
connect()
pg_connect()
db_utils.postgres.connect("")
other.connect()
"""
    assert list(_connect_calls(source)) == [7, 8, 9, 10]


def test_server_log_counts_one_roles_sessions_and_their_peak(tmp_path: Path) -> None:
    log = tmp_path / "postgres.log"
    log.write_text("[9] LOG:  connection authorized: user=proj_x database=proj_x\n")
    reader = ServerLog(log)
    mark = reader.mark()  # the session of pid 9 started before the run: never counted
    lines = [
        "[9] LOG:  disconnection: session time: 0:00:00.010 user=proj_x database=proj_x host=127.0.0.1",
        "[10] LOG:  connection authorized: user=proj_x database=proj_x application_name=a",
        "[11] LOG:  connection authorized: user=someone_else database=proj_x",
        "[12] LOG:  connection authorized: user=proj_x database=proj_x",
        "[10] LOG:  disconnection: session time: 0:00:00.010 user=proj_x database=proj_x host=127.0.0.1",
        "[13] LOG:  connection authorized: user=proj_x database=proj_x",
        "[14] LOG:  connection authorized: user=proj_x database=tenant_1",
        '[14] FATAL:  database "tenant_1" does not exist',
        "[15] LOG:  connection authorized: user=proj_x database=proj_x",
    ]
    with log.open("a") as handle:
        handle.write("\n".join(lines) + "\n")
    use = reader.sessions(mark, "proj_x")
    assert (use.opened, use.peak) == (5, 3)
