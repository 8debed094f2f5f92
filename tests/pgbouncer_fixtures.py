"""pytest fixtures for a real PgBouncer (testservers/pgbouncer.py) in front of the test PostgreSQL.

A bouncer is per test (starting one is cheap) and has its own login role, so the server
connections it holds can be counted exactly and are all gone, and the role dropped, when the test ends.
Without the ``pgbouncer`` binary the tests are skipped, except in CI, where that is a failure: the
Debian package is installed by ``.ci/run``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from testservers.pgbouncer import PgBouncerServer, PgBouncerUnavailable, find_pgbouncer, launch_pgbouncer
from testservers.postgres import PostgresServer


@pytest.fixture
def pgbouncer_binary() -> Path:
    """The pgbouncer executable; skips the test without one (fails it in CI)."""
    try:
        return find_pgbouncer()
    except PgBouncerUnavailable as missing:
        if IN_CI:
            pytest.fail(f"PgBouncer is required in CI: {missing}", pytrace=False)
        pytest.skip(str(missing))


@pytest.fixture
def pgbouncer_factory(
    postgres: PostgresServer, pgbouncer_binary: Path
) -> Iterator[Callable[..., PgBouncerServer]]:
    """Start bouncers (``pool_mode=``, ``default_pool_size=``, ``max_client_conn=``, ``extra_settings=``,
    ``postgres=`` another server than the session's); all stopped after the test."""
    started: list[PgBouncerServer] = []

    def factory(*, postgres: PostgresServer = postgres, **options: object) -> PgBouncerServer:
        server = launch_pgbouncer(postgres, **options)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.stop()


@pytest.fixture
def pgbouncer(pgbouncer_factory: Callable[..., PgBouncerServer]) -> PgBouncerServer:
    """Transaction pooling, ``default_pool_size=20``, in front of the session's PostgreSQL."""
    return pgbouncer_factory(pool_mode="transaction", default_pool_size=20)
