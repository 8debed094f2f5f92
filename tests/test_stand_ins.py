"""A test suite that replaces the driver's function still intercepts migrated calls (db_utils.stand_ins).

Before migration, ``mock.patch("psycopg2.connect")`` (or ``sqlite3.connect``, ``urllib.request.urlopen``)
intercepts the legacy call; after it, the drop-in must hand the call to the stand-in with the caller's
own arguments, unpooled. A wrapper that calls through to the original (instrumentation) keeps the pool.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg2
import pytest

import db_utils
import db_utils.http
import db_utils.postgres
import db_utils.sqlite
from db_utils.http import http_stats
from db_utils.postgres.proxy import PooledConnection as PooledPostgres
from db_utils.sqlite.proxy import PooledConnection as PooledSqlite
from db_utils.stand_ins import DriverFunction, defined_in, drop_in
from testservers.http import PoolTestServer

# (where the legacy code's call went, the drop-in the codemod put there)
DRIVERS: dict[str, tuple[str, Callable[..., Any]]] = {
    "psycopg2": ("psycopg2.connect", db_utils.postgres.connect),
    "sqlite3": ("sqlite3.connect", db_utils.sqlite.connect),
    "urllib": ("urllib.request.urlopen", db_utils.http.urlopen),
}

# The same call written four ways: a mock asserts on the shape, not on the bound values.
CALLS: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "psycopg2": [
        (("dbname=app host=db.invalid",), {}),
        ((), {"dsn": "dbname=app"}),
        (
            (),
            {"host": "db.invalid", "dbname": "app", "user": "u", "password": "secret", "connect_timeout": 3},
        ),
        (("dbname=app", None, None), {"sslmode": "require"}),
    ],
    "sqlite3": [
        (("app.db",), {}),
        ((), {"database": "app.db"}),
        (("app.db",), {"timeout": 5.0, "check_same_thread": True}),  # explicit defaults stay explicit
        (("app.db", 10, 0, None), {}),
    ],
    "urllib": [
        (("http://api.invalid/x",), {}),
        ((), {"url": "http://api.invalid/x"}),
        (("http://api.invalid/x",), {"timeout": 3}),
        (("http://api.invalid/x", b"a=1", 3), {}),
    ],
}


@pytest.fixture(autouse=True)
def no_pools(sqlite_pools: None) -> None:
    """Every test starts and ends without pools (``sqlite_pools`` disposes of them all)."""


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_mock_of_the_driver_gets_each_call_as_written(driver: str) -> None:
    target, drop_in = DRIVERS[driver]
    for args, kwargs in CALLS[driver]:
        with mock.patch(target) as stand_in:
            assert drop_in(*args, **kwargs) is stand_in.return_value
        assert stand_in.call_args_list == [mock.call(*args, **kwargs)]
    assert db_utils.pool_status()["postgres"] == {}
    assert db_utils.pool_status()["sqlite"]["databases"] == {}


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_fake_function_gets_the_call_and_its_errors_propagate(
    driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, drop_in = DRIVERS[driver]
    module, _, name = target.rpartition(".")
    seen: list[tuple[Any, ...]] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        seen.append(args)
        raise OSError("refused by the test")

    monkeypatch.setattr(f"{module}.{name}", refuse)
    args, kwargs = CALLS[driver][0]
    with pytest.raises(OSError, match="refused by the test"):
        drop_in(*args, **kwargs)
    assert seen == [args]


def test_an_autospecced_mock_checks_the_arguments_against_the_drivers_signature() -> None:
    with mock.patch("urllib.request.urlopen", autospec=True) as stand_in:
        with pytest.raises(TypeError):
            db_utils.http.urlopen("http://api.invalid/x", no_such_argument=1)  # type: ignore[call-arg]
        db_utils.http.urlopen("http://api.invalid/x", timeout=3)
    stand_in.assert_called_once_with("http://api.invalid/x", timeout=3)


def _calling_through(original: Callable[..., Any], calls: list[object]) -> Callable[..., Any]:
    """What driver instrumentation does (OpenTelemetry, ddtrace): wrap, record, call the original."""

    @functools.wraps(original)
    def traced(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    return traced


def test_sqlite_stays_pooled_under_a_wrapper_that_calls_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(sqlite3, "connect", _calling_through(sqlite3.connect, calls))
    path = str(tmp_path / "app.db")
    for _ in range(3):
        connection: Any = db_utils.sqlite.connect(path)  # typed as sqlite3's, for migrated code
        assert isinstance(connection, PooledSqlite)
        assert connection.execute("SELECT 1").fetchone() == (1,)
        connection.close()
    assert len(calls) == 1  # the pool's one connection was opened through the wrapper


@pytest.mark.postgres
def test_psycopg2_stays_pooled_under_a_wrapper_that_calls_through(
    pg_pools: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(psycopg2, "connect", _calling_through(psycopg2.connect, calls))
    for _ in range(3):
        connection = db_utils.postgres.connect(pg_pools.dsn)
        assert isinstance(connection, PooledPostgres)
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
        connection.close()
    assert len(calls) == 1


@pytest.mark.postgres
def test_psycopg2_is_pooled_again_once_the_mock_is_gone(pg_pools: Any) -> None:
    with mock.patch("psycopg2.connect") as stand_in:
        db_utils.postgres.connect(pg_pools.dsn)
    stand_in.assert_called_once_with(pg_pools.dsn)
    connection = db_utils.postgres.connect(pg_pools.dsn)
    assert isinstance(connection, PooledPostgres)
    connection.close()


@pytest.mark.usefixtures("fresh_http_pool")
def test_urlopen_stays_pooled_under_a_wrapper_and_counts_stand_ins(
    http_server: PoolTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = dict(http_stats()["fallbacks"])
    with mock.patch("urllib.request.urlopen"):
        db_utils.http.urlopen(http_server.url + "/echo")
    assert http_stats()["fallbacks"].get("stand-in", 0) == before.get("stand-in", 0) + 1
    assert http_server.connections_accepted == 0  # the mock answered: nothing reached the server

    calls: list[object] = []
    monkeypatch.setattr(urllib.request, "urlopen", _calling_through(urllib.request.urlopen, calls))
    for _ in range(3):
        with db_utils.http.urlopen(http_server.url + "/echo") as response:
            assert response.status == 200
            response.read()
    assert http_server.connections_accepted == 1  # kept alive: the pooled path, not urllib's
    assert http_stats()["fallbacks"] == {**before, "stand-in": before.get("stand-in", 0) + 1}


def test_the_drivers_own_function_and_wrappers_of_it_are_not_stand_ins() -> None:
    own = DriverFunction(urllib.request.urlopen, defined_in("urllib/request.py", "urlopen"))
    wrapper = _calling_through(urllib.request.urlopen, [])
    assert not own.is_stand_in(urllib.request.urlopen)
    assert not own.is_stand_in(wrapper)
    assert not own.is_stand_in(_calling_through(wrapper, []))
    assert own.is_stand_in(mock.MagicMock())
    assert own.is_stand_in(mock.create_autospec(urllib.request.urlopen))
    assert own.is_stand_in(lambda url: None)
    looped = mock.Mock(spec=["__wrapped__"])
    looped.__wrapped__ = looped
    assert own.is_stand_in(looped)  # a __wrapped__ cycle


def test_imported_while_a_test_had_replaced_the_driver() -> None:
    """A conftest may patch before the application (hence db_utils) is imported: the stand-in seen first
    is not taken for urllib's own function, inside the patch or after it."""
    stand_in = mock.MagicMock()
    own = DriverFunction(stand_in, defined_in("urllib/request.py", "urlopen"))
    assert own.is_stand_in(stand_in)
    assert not own.is_stand_in(urllib.request.urlopen)
    assert own.own is urllib.request.urlopen  # the fast path from then on


def test_the_first_call_a_stand_in_takes_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Instrumentation that calls through without ``__wrapped__`` would lose the pool silently."""
    original = sqlite3.connect
    driver = DriverFunction(original, lambda candidate: candidate is original)
    quiet = drop_in(lambda database: "pooled", sqlite3, "connect", driver)
    with caplog.at_level(logging.WARNING, "db_utils.pool"), mock.patch("sqlite3.connect") as stand_in:
        quiet("a.db")
        quiet("b.db")
    assert stand_in.call_count == 2
    logged = [record.getMessage() for record in caplog.records if "is replaced by" in record.getMessage()]
    assert len(logged) == 1
    assert logged[0].startswith("sqlite3.connect is replaced by <MagicMock")
    assert quiet("c.db") == "pooled"  # the patch is gone
