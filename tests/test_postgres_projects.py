"""Real-shaped legacy projects pass their own suites identically before and after ``poolshift migrate --all``,
every connect site routed to db_utils, within the pool bound of server connections.

Each project and what it proves is listed in tests/postgres_projects/driver.py (``PROJECTS``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.postgres_projects.driver import PROJECTS, run_project
from testservers.postgres import PostgresServer


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PROJECTS))
def test_project_keeps_its_test_outcomes_after_migration(
    name: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    result = run_project(PROJECTS[name], postgres, tmp_path)
    print(result.summary())  # shown with -s or -rA: both connection figures, legacy and migrated
