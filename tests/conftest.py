"""Shared fixtures: real servers on 127.0.0.1, started and stopped by the tests themselves.

In CI (``CI=true``) a server that cannot start is a test *failure*, never a skip: the suite must prove the
PostgreSQL semantics on every run. On a developer machine without PostgreSQL those tests are skipped with
the reason.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator

import pytest

import db_utils
from testservers.postgres import PostgresServer, PostgresUnavailable, launch_postgres

pytest_plugins = ["testservers.http_fixtures", "tests.pgbouncer_fixtures"]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _launch_or_skip(**kwargs: object) -> PostgresServer:
    try:
        return launch_postgres(**kwargs)  # type: ignore[arg-type]
    except PostgresUnavailable as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL 15 server shared by the session (max_connections=100)."""
    server = _launch_or_skip(max_connections=100)
    yield server
    server.stop()


@pytest.fixture
def postgres_factory() -> Iterator[Callable[..., PostgresServer]]:
    """Start dedicated servers (e.g. a small ``max_connections`` for exhaustion tests); all stopped after."""
    started: list[PostgresServer] = []

    def factory(max_connections: int = 20, extra_settings: dict[str, str] | None = None) -> PostgresServer:
        server = _launch_or_skip(max_connections=max_connections, extra_settings=extra_settings)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Remove every variable poolshift reads, so a developer's shell cannot change a test's outcome."""
    for name in list(os.environ):
        if (
            name.startswith(("DB_", "POSTGRES_", "PG", "HTTP_POOL_", "SQLITE_POOL_"))
            or name == "DATABASE_URL"
        ):
            monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def sqlite_pools(clean_env: pytest.MonkeyPatch) -> Iterator[None]:
    """No SQLite pool surviving from another test, and none left for the next one."""
    import db_utils.sqlite

    db_utils.sqlite.dispose()
    yield
    db_utils.sqlite.dispose()


@pytest.fixture
def pg_pools(postgres: PostgresServer, clean_env: pytest.MonkeyPatch) -> Iterator[PostgresServer]:
    """``DATABASE_URL`` pointing at the session server, and no pool surviving from another test."""
    clean_env.setenv("DATABASE_URL", postgres.url)
    db_utils.dispose_pools()
    yield postgres
    db_utils.dispose_pools()


@pytest.fixture
def scratch_table(postgres: PostgresServer) -> Iterator[str]:
    """A fresh table ``(id int PRIMARY KEY)`` with a unique name, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    postgres.query(f"CREATE TABLE {name} (id int PRIMARY KEY)")
    yield name
    postgres.query(f"DROP TABLE {name}")


@pytest.fixture
def made_temp_dirs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every directory ``tempfile.mkdtemp`` makes during the test: a test server that fails to start must
    leave none of them behind."""
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args: object, **kwargs: object) -> str:
        made.append(real_mkdtemp(*args, **kwargs))  # type: ignore[call-overload]
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    return made
