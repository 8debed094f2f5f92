"""The idiomatic API: borrow a connection for a block, run an operation, retry on disconnects.

``execute_with_pool_connection`` retries **only** disconnect-class failures and failures to obtain a
connection at all, until a deadline (``DB_RETRY_DEADLINE``) rather than a fixed count, so a restart or
failover shorter than the deadline is invisible to callers. Idempotency assumption: when a disconnect
happens *during* the operation, the server rolled back the transaction that died with the connection, so
re-running the operation is safe for any operation that does its work inside one transaction and has no
side effects outside the database (no e-mails sent, no files written).

A statement that may have committed is never retried. The handle tells: a disconnect after a COMMIT
was sent on it (its ``commit()``, including the one this function runs after the operation, or the end
of a ``with conn:`` block) or while it was in autocommit mode (every statement commits on its own) may
have lost only the server's answer, not the work; such a failure is returned as an error. A ``COMMIT``
sent as SQL text is not seen: operations that do that must be idempotent, or use ``retries=0``. An
operation that is idempotent (``INSERT ... ON CONFLICT DO NOTHING`` with client-generated ids, upserts,
reads) can say so with ``idempotent=True``: its disconnects are then retried even after a COMMIT.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import psycopg2
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine

from db_utils.postgres.deadline import Deadline
from db_utils.postgres.instrument import PoolState
from db_utils.postgres.proxy import PooledConnection
from db_utils.postgres.registry import pool_for

T = TypeVar("T")

# Never retried, whatever the dialect thinks: the same statement would fail the same way again.
_NEVER_RETRIED = (
    psycopg2.IntegrityError,
    psycopg2.ProgrammingError,
    psycopg2.DataError,
    psycopg2.NotSupportedError,
)


# libpq's messages for connection refusals that retrying cannot fix.
_PERMANENT_CONNECT_FAILURES = (
    "authentication failed",
    "no password supplied",
    "does not exist",
    "pg_hba.conf",
    "permission denied",
)


def borrow(url: str | URL | None = None, checked_out_at: str | None = None) -> PooledConnection:
    """Check a connection out of the pool for ``url`` as a :class:`PooledConnection`.

    Raises the driver's error (``psycopg2.OperationalError``) if no connection can be made, and
    :class:`~db_utils.postgres.instrument.PoolTimeoutError` if the pool stays exhausted for its timeout.
    """
    return _checkout(*pool_for(url), checked_out_at)


def _checkout(engine: Engine, state: PoolState, checked_out_at: str | None = None) -> PooledConnection:
    return PooledConnection(engine.raw_connection(), state.display_url, checked_out_at)


class get_pooled_connection:
    """``with get_pooled_connection(url) as conn:`` commit on clean exit, roll back on exception, always
    return the connection to the pool. A connection failure raises; it never yields None.

    A class rather than ``@contextmanager``: it sits on every request's hot path and this is cheaper.
    """

    __slots__ = ("_connection", "_url")

    def __init__(self, url: str | URL | None = None) -> None:
        self._url = url
        self._connection: PooledConnection | None = None

    def __enter__(self) -> PooledConnection:
        self._connection = borrow(self._url)
        return self._connection

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if exc_type is None and not connection.closed:
                connection.commit()
        finally:
            # On an exception, close() rolls back (the pool's reset does): no explicit rollback here, so
            # a failing rollback on a broken connection cannot mask the caller's exception.
            connection.close()


def execute_with_pool(operation: Callable[[PooledConnection], T], url: str | URL | None = None) -> T:
    """``operation(conn)`` inside :class:`get_pooled_connection`; its result is returned, errors propagate."""
    with get_pooled_connection(url) as connection:
        return operation(connection)


def execute_with_pool_connection(
    operation: Callable[[PooledConnection], T],
    url: str | URL | None = None,
    *,
    retries: int | None = None,
    backoff: float = 0.05,
    max_backoff: float = 2.0,
    deadline: float | None = None,
    idempotent: bool = False,
) -> dict[str, Any]:
    """Run ``operation(conn)``, retrying disconnects; never raises for database errors.

    Returns ``{"status": "success", "result": ..., "attempts": n}`` or ``{"status": "error", "message":
    ..., "error_type": ..., "attempts": n}``. Retries, each on a fresh connection, after
    ``min(max_backoff, backoff * 2**k)`` seconds scaled by a random factor in [0.5, 1] (jitter keeps
    many clients from reconnecting in lock-step), as long as the next attempt starts within
    ``deadline`` seconds of the first (default: the pool's ``DB_RETRY_DEADLINE``); ``retries`` also
    caps their number (default: no cap; 0 never retries). See the module docstring for what is
    never retried, and for ``idempotent``.
    """
    if retries is not None and retries < 0:
        raise ValueError(f"retries={retries!r} must be >= 0")
    started = time.monotonic()
    try:
        # Resolved once: every attempt (and the error message's password scrub) uses this very pool.
        engine, state = pool_for(url)
    except (psycopg2.Error, sa_exc.SQLAlchemyError) as error:
        return _error_result(error, 1, None)
    if deadline is None:
        deadline = state.settings.retry_deadline
    attempts = 0
    while True:
        attempts += 1
        try:
            result = _attempt(operation, engine, state, idempotent)
            return {"status": "success", "result": result, "attempts": attempts}
        except (psycopg2.Error, sa_exc.SQLAlchemyError) as error:
            delay = min(max_backoff, backoff * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
            out_of_time = time.monotonic() + delay - started > deadline
            out_of_tries = retries is not None and attempts > retries
            if not getattr(error, "poolshift_retryable", False) or out_of_tries or out_of_time:
                return _error_result(error, attempts, engine.url.password)
        time.sleep(delay)


def _attempt(
    operation: Callable[[PooledConnection], T], engine: Engine, state: PoolState, idempotent: bool = False
) -> T:
    """One attempt; marks the raised error ``poolshift_retryable`` when a retry is safe and useful."""
    try:
        connection = _checkout(engine, state)
    except (psycopg2.OperationalError, sa_exc.DisconnectionError, sa_exc.InvalidRequestError) as error:
        # Could not connect (failover, restart; SQLAlchemy gives up after two reconnects in one checkout):
        # nothing ran, so retrying cannot repeat any work. A refusal that will not change (bad password,
        # unknown database) is not worth the deadline.
        permanent = any(reason in str(error) for reason in _PERMANENT_CONNECT_FAILURES)
        error.poolshift_retryable = not permanent  # type: ignore[union-attr]
        raise
    try:
        result = operation(connection)
        if not connection.closed:
            connection.commit()
    except psycopg2.Error as error:
        raw = connection._raw
        if not isinstance(error, _NEVER_RETRIED) and engine.dialect.is_disconnect(error, raw, None):
            # Retry only if the work surely died with the connection (see the module docstring).
            error.poolshift_retryable = idempotent or not connection.may_have_committed
            # A disconnect usually means a restart or failover: every pooled connection older than now
            # is suspect. Mark them all for replacement (SQLAlchemy's Connection does the same); this is
            # the pool's long-standing internal API, with no public equivalent.
            engine.pool._invalidate(connection._fairy, error)
        raise
    finally:
        connection.close()  # rolls back on failure; a broken connection is discarded, not reused
    return result


def _error_result(error: BaseException, attempts: int, password: str | None) -> dict[str, Any]:
    return {
        "status": "error",
        "message": _hide(password, str(error).strip()),
        "error_type": type(error).__name__,
        "attempts": attempts,
    }


def scrub_password(text: str, url: str | URL | None) -> str:
    """Belt and braces: remove the pool's password from a message even if a driver echoed it."""
    try:
        password = pool_for(url)[0].url.password
    except Exception:  # a URL that does not even resolve has no pool password to hide
        return text
    return _hide(password, text)


def _hide(password: str | None, text: str) -> str:
    return text.replace(password, "***") if password else text


def health_check(url: str | URL | None = None) -> dict[str, Any]:
    """``SELECT 1`` through the pool: ``{"healthy", "url", "latency_ms", "error"}``; never raises.

    The query is bounded by the pool's ``DB_POOL_PING_TIMEOUT`` (a hung server makes the check fail,
    not hang); the checkout before it by the checkout ping's own bound and libpq's ``connect_timeout``.
    """
    started = time.perf_counter()
    try:
        display_url, timeout = _display_and_ping_timeout(url)
        with get_pooled_connection(url) as connection:
            _select_one(connection, timeout)
    except Exception as error:
        return {
            "healthy": False,
            "url": _display(url),
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "error": f"{type(error).__name__}: {scrub_password(str(error).strip(), url)}",
        }
    return {
        "healthy": True,
        "url": display_url,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        "error": None,
    }


def _display_and_ping_timeout(url: str | URL | None) -> tuple[str, float]:
    state = pool_for(url)[1]
    return state.display_url, state.settings.ping_timeout


def _select_one(connection: PooledConnection, timeout: float) -> None:
    guard = Deadline(connection.fileno(), timeout)
    try:
        with guard, connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except psycopg2.Error:
        if guard.fired:
            raise TimeoutError(f"no answer within {timeout:g} s (DB_POOL_PING_TIMEOUT)") from None
        raise
    if guard.fired:
        raise TimeoutError(f"no answer within {timeout:g} s (DB_POOL_PING_TIMEOUT)")


def _display(url: str | URL | None) -> str:
    try:
        return pool_for(url)[1].display_url
    except Exception:
        return "<unresolved URL>"
