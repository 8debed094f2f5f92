"""DB_POOL_MIN_IDLE (warm-up in the background) and DB_POOL_MAX_CONNECTING (the cap on connect attempts).

Connection attempts are made observable by :class:`~tests.holding_proxy.HoldingProxy`: it holds each new
connection until the test releases it, so "in flight" lasts exactly as long as the test says.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

import db_utils
from db_utils.config import ConfigError
from db_utils.postgres.registry import pool_for
from db_utils.postgres.settings import resolve_settings
from tests.holding_proxy import HoldingProxy
from testservers.postgres import PostgresServer


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll a state another thread changes, with a generous deadline (a check interval, not a delay)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.005)


@pytest.fixture
def app_name(postgres: PostgresServer) -> Iterator[str]:
    """A unique application_name: this test's sessions, counted server-side, apart from any other's.

    Afterwards every pool is disposed and the test waits until the server has ended those sessions
    (backends exit after their client goes), so later tests that count backends see none of them.
    """
    name = f"warmup-{uuid.uuid4().hex[:8]}"
    yield name
    db_utils.dispose_pools()
    _wait_for(lambda: postgres.backend_count(name) == 0, f"the sessions of {name} to end")


def _url(server: PostgresServer, app_name: str, port: int | None = None) -> str:
    url = make_url(server.url).set(port=port or server.port, query={"application_name": app_name})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def proxy(postgres: PostgresServer) -> Iterator[HoldingProxy]:
    with HoldingProxy(postgres.port) as holding:
        yield holding


def _figures(url: str) -> dict[str, Any]:
    state = pool_for(url)[1]
    figures: dict[str, Any] = db_utils.pool_status()["postgres"][state.display_url]
    return figures


def _checkout_and_select(url: str) -> int:
    with db_utils.get_pooled_connection(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        return int(cur.fetchone()[0])


def test_warm_up_opens_min_idle_connections_without_any_checkout(
    pg_pools: PostgresServer, app_name: str
) -> None:
    url = _url(pg_pools, app_name)
    engine = db_utils.get_connection_pool(url, min_idle=3, pool_size=5)
    engine.pool.warm_up.thread.join(timeout=60)  # type: ignore[attr-defined]

    assert pg_pools.backend_count(app_name) == 3
    figures = _figures(url)
    assert (figures["idle"], figures["checked_out"], figures["checkouts"]) == (3, 0, 0)
    assert figures["connections_created"] == 3
    # Kept: a checkout reuses a warmed connection, and returning it leaves the three open.
    assert _checkout_and_select(url) == 1
    assert pg_pools.backend_count(app_name) == 3
    assert _figures(url)["connections_created"] == 3


def test_min_idle_beyond_pool_size_warms_only_pool_size(pg_pools: PostgresServer, app_name: str) -> None:
    # Connections beyond pool_size are overflow, closed when returned: warming them would be wasted.
    url = _url(pg_pools, app_name)
    engine = db_utils.get_connection_pool(url, min_idle=8, pool_size=2)
    engine.pool.warm_up.thread.join(timeout=60)  # type: ignore[attr-defined]
    assert pg_pools.backend_count(app_name) == 2
    assert _figures(url)["idle"] == 2


def test_no_warm_up_by_default_opens_nothing(pg_pools: PostgresServer, app_name: str) -> None:
    url = _url(pg_pools, app_name)
    engine = db_utils.get_connection_pool(url)
    assert resolve_settings().min_idle == 0
    assert engine.pool.warm_up is None  # type: ignore[attr-defined]
    assert pg_pools.backend_count(app_name) == 0


def test_connect_attempts_never_exceed_the_cap(
    pg_pools: PostgresServer, proxy: HoldingProxy, app_name: str
) -> None:
    url = _url(pg_pools, app_name, port=proxy.port)
    pool = db_utils.get_connection_pool(url, pool_size=6, max_overflow=0, max_connecting=2).pool
    finish = threading.Event()
    results: list[int] = []

    def caller() -> None:
        with db_utils.get_pooled_connection(url) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            results.append(int(cur.fetchone()[0]))
            finish.wait(60)  # keep the connection: every caller needs one of its own

    callers = [threading.Thread(target=caller) for _ in range(6)]
    for thread in callers:
        thread.start()
    for remaining in range(6, 0, -1):
        in_flight = min(2, remaining)
        # Every caller not yet served is accounted for: its attempt in flight (held at the proxy), or
        # waiting in line; the attempt released before has finished and the line took over its slot.
        _wait_for(
            lambda r=remaining, f=in_flight: (  # type: ignore[misc]
                proxy.held == f and _figures(url)["connecting"] == f and pool.waiting() == r - f  # type: ignore[attr-defined]
            ),
            f"{in_flight} attempts held and {remaining - in_flight} waiting",
        )
        proxy.release(1)
    _wait_for(lambda: len(results) == 6, "every caller served")
    finish.set()
    for thread in callers:
        thread.join(timeout=60)
    assert results == [1] * 6
    assert proxy.max_held == 2
    assert proxy.accepted == 6


def test_a_waiting_caller_takes_a_returned_connection_instead_of_opening_one(
    pg_pools: PostgresServer, proxy: HoldingProxy, app_name: str
) -> None:
    url = _url(pg_pools, app_name, port=proxy.port)
    pool = db_utils.get_connection_pool(url, pool_size=1, max_overflow=5, max_connecting=1).pool
    proxy.open()
    borrowed = db_utils.get_pooled_connection(url)
    borrowed.__enter__()
    proxy.hold()
    opener = threading.Thread(target=_checkout_and_select, args=(url,))
    opener.start()  # finds nothing idle, takes the only attempt slot: held at the proxy
    proxy.wait_until(lambda: proxy.held == 1)
    result: list[int] = []
    waiter = threading.Thread(target=lambda: result.append(_checkout_and_select(url)))
    waiter.start()
    _wait_for(lambda: pool.waiting() == 1, "the caller waiting in line")  # type: ignore[attr-defined]
    borrowed.__exit__(None, None, None)  # returned: handed straight to the waiting caller
    waiter.join(timeout=60)
    assert result == [1]
    assert proxy.accepted == 2  # the borrowed connection and the opener's attempt: the waiter opened none
    proxy.release(1)
    opener.join(timeout=60)


def test_warm_up_goes_through_the_cap_and_a_caller_is_never_blocked_by_it(
    pg_pools: PostgresServer, proxy: HoldingProxy, app_name: str
) -> None:
    url = _url(pg_pools, app_name, port=proxy.port)
    # One attempt at a time: the warm-up's first connection is held at the proxy.
    db_utils.get_connection_pool(url, pool_size=3, min_idle=3, max_connecting=1)
    proxy.wait_until(lambda: proxy.accepted == 1)
    assert _figures(url)["connecting"] == 1
    # A caller arriving meanwhile waits in line (the attempt slot is taken) and gets the warm-up's first
    # connection the moment it is made.
    result: list[int] = []
    caller = threading.Thread(target=lambda: result.append(_checkout_and_select(url)))
    caller.start()
    pool = pool_for(url)[0].pool
    _wait_for(lambda: pool.waiting() == 1, "the caller waiting in line")  # type: ignore[attr-defined]
    proxy.open()
    caller.join(timeout=60)
    assert result == [1]
    pool_for(url)[0].pool.warm_up.thread.join(timeout=60)  # type: ignore[attr-defined]
    assert proxy.max_held == 1
    assert pg_pools.backend_count(app_name) == 3  # the warm-up stopped at min_idle, counting the caller's


def test_dispose_stops_the_warm_up(pg_pools: PostgresServer, proxy: HoldingProxy, app_name: str) -> None:
    url = _url(pg_pools, app_name, port=proxy.port)
    engine = db_utils.get_connection_pool(url, pool_size=4, min_idle=4, max_connecting=1)
    warm_up = engine.pool.warm_up  # type: ignore[attr-defined]
    proxy.wait_until(lambda: proxy.held == 1)
    db_utils.dispose_pools()
    proxy.open()  # the attempt in flight completes after the dispose
    warm_up.thread.join(timeout=60)
    assert not warm_up.thread.is_alive()
    assert proxy.accepted == 1  # no further attempt after the dispose
    # ... and the connection it finished was closed, not left in the forgotten pool.
    _wait_for(lambda: pg_pools.backend_count(app_name) == 0, "the warmed connection to be closed")


def test_warm_up_failure_is_logged_without_password_and_checkouts_still_work(
    pg_pools: PostgresServer, proxy: HoldingProxy, app_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = _url(pg_pools, app_name, port=proxy.port)
    proxy.refuse()  # the server looks down while the pool warms up
    with caplog.at_level(logging.WARNING, logger="db_utils.pool"):
        engine = db_utils.get_connection_pool(url, pool_size=3, min_idle=3)
        engine.pool.warm_up.thread.join(timeout=60)  # type: ignore[attr-defined]
    (warning,) = [r for r in caplog.records if "warm-up" in r.getMessage()]
    assert "OperationalError" in warning.getMessage()
    assert proxy.accepted == 1  # the first failure ends the warm-up: a down server is not hammered
    proxy.open()
    assert _checkout_and_select(url) == 1
    assert pg_pools.backend_count(app_name) == 1  # on demand from now on


def test_warm_up_failure_message_never_shows_the_password(
    pg_pools: PostgresServer, app_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    password = "Wr0ng-s3cret-" + uuid.uuid4().hex[:6]
    url = make_url(_url(pg_pools, app_name)).set(password=password).render_as_string(hide_password=False)
    with caplog.at_level(logging.WARNING, logger="db_utils.pool"):
        engine = db_utils.get_connection_pool(url, pool_size=2, min_idle=2)
        engine.pool.warm_up.thread.join(timeout=60)  # type: ignore[attr-defined]
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "password authentication failed" in text
    assert password not in text


@pytest.mark.parametrize(("variable", "value"), [("DB_POOL_MIN_IDLE", "-1"), ("DB_POOL_MAX_CONNECTING", "0")])
def test_bad_values_name_the_variable(clean_env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        resolve_settings()


def test_a_forked_child_inherits_neither_the_warm_up_nor_its_attempt_slot(
    pg_pools: PostgresServer, proxy: HoldingProxy, app_name: str
) -> None:
    url = _url(pg_pools, app_name, port=proxy.port)
    db_utils.get_connection_pool(url, pool_size=3, min_idle=3, max_connecting=1)
    proxy.wait_until(lambda: proxy.held == 1)  # the parent's warm-up holds the only attempt slot
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which never returns to pytest
        code = 1
        try:
            engine = pool_for(url)[0]
            before = (engine.pool.warm_up, _figures(url)["connecting"])  # type: ignore[attr-defined]
            # With the parent's slot inherited as taken, this connect would wait forever.
            os.write(write_end, repr((before, _checkout_and_select(url))).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    proxy.open()
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert output == repr(((None, 0), 1))
    pool_for(url)[0].pool.warm_up.thread.join(timeout=60)  # type: ignore[attr-defined]
    assert _figures(url)["idle"] == 3  # the parent's warm-up went on
