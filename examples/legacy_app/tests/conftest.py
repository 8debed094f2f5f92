"""Real dependencies for the legacy app's tests: a throwaway PostgreSQL, a local catalogue service and a
SQLite cache file per test.

The PostgreSQL server comes from the poolshift repository's ``testservers`` package: its root is
``$POOLSHIFT_ROOT`` if set, else three directories up from this file (the in-repo location). In CI
(``CI=true``) a PostgreSQL that cannot start is a failure, never a skip.

The tests only rely on observable behavior (results, committed data seen from a separate connection,
errors), never on how the app gets its connections: the same suite must pass after poolshift migrates
the app onto pooled connections.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_service import FakeCatalogue, closed_port

APP_ROOT = Path(__file__).resolve().parents[1]
POOLSHIFT_ROOT = Path(os.environ.get("POOLSHIFT_ROOT") or Path(__file__).resolve().parents[3])
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

if not (POOLSHIFT_ROOT / "testservers" / "postgres.py").is_file():
    raise pytest.UsageError(
        f"cannot find the poolshift test servers at {POOLSHIFT_ROOT}/testservers/postgres.py; "
        "set POOLSHIFT_ROOT to the poolshift repository root"
    )
if str(POOLSHIFT_ROOT) not in sys.path:
    sys.path.insert(0, str(POOLSHIFT_ROOT))

from testservers.postgres import PostgresServer, PostgresUnavailable, launch_postgres  # noqa: E402

TABLES = ("audit_log", "order_items", "orders", "products", "users")

# Variables the app (or libpq underneath it) reads; each test starts from a known environment.
_APP_ENV_PREFIXES = ("POSTGRES_", "PG", "SERVICE_", "CACHE_DB_PATH", "REPORT_DB_PATH", "DATABASE_URL", "DB_")


# pyproject.toml's ``pythonpath`` does this when pytest runs from here; this covers other invocations.
# The app must be imported from this checkout, not from an installed copy somewhere else.
if str(APP_ROOT) not in sys.path:
    sys.path.insert(0, str(APP_ROOT))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, with the app's schema applied."""
    try:
        server = launch_postgres(max_connections=50)
    except PostgresUnavailable as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {exc}", pytrace=False)
        pytest.skip(str(exc))
    try:
        server.query((APP_ROOT / "legacy_app" / "schema.sql").read_text())
        yield server
        _write_parity_stats(server)
    finally:
        server.stop()


def _write_parity_stats(server: PostgresServer) -> None:
    """For poolshift's parity session: how many connections the app opened during the whole run."""
    target = os.environ.get("PARITY_STATS_FILE")
    if target:
        Path(target).write_text(json.dumps({"connections_opened": server.client_sessions_logged()}))


@pytest.fixture(scope="session")
def catalogue_server() -> Iterator[FakeCatalogue]:
    service = FakeCatalogue().start()
    yield service
    service.stop()


@pytest.fixture(autouse=True)
def app_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment per test: nothing from the developer's shell, a fresh cache file, and a
    SERVICE_URL that refuses connections unless the test asks for the catalogue."""
    for name in list(os.environ):
        if name.startswith(_APP_ENV_PREFIXES) and name != "PG_BINDIR":  # PG_BINDIR: the test server's
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CACHE_DB_PATH", str(tmp_path / "cache.db"))
    monkeypatch.setenv("SERVICE_URL", f"http://127.0.0.1:{closed_port()}")
    return monkeypatch


@pytest.fixture
def db(pg_server: PostgresServer, app_env: pytest.MonkeyPatch) -> PostgresServer:
    """The PostgreSQL server with empty tables and the app's POSTGRES_* variables pointing at it."""
    for name, value in pg_server.env().items():
        app_env.setenv(name, value)
    # A connection the app left idle in a transaction would block TRUNCATE forever: fail instead.
    pg_server.query(f"SET lock_timeout = '10s'; TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    return pg_server


@pytest.fixture
def catalogue(catalogue_server: FakeCatalogue, app_env: pytest.MonkeyPatch) -> Iterator[FakeCatalogue]:
    """The catalogue service, reset to its default products, with SERVICE_URL pointing at it."""
    catalogue_server.state.reset()
    app_env.setenv("SERVICE_URL", catalogue_server.url)
    yield catalogue_server
    # Let go of any handler a timeout test left parked on a slow endpoint.
    catalogue_server.state.release_slow.set()
