"""The idiomatic API: borrow a connection for a block, run an operation, retry on disconnects.

Where the connection comes from (``source``, keyword ``url``): a database URL (``str`` or SQLAlchemy
``URL``), None for the default URL from the environment, or a callable returning a connection, such as
the application's own helper whose ``psycopg2.connect`` became ``db_utils.postgres.connect``: the block
then uses the helper's pool, so the idiomatic rewrite never switches databases. A callable may also
return a plain psycopg2 connection (a helper not migrated yet): the same commit/rollback/close apply.

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

import functools
import random
import sys
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, TypeVar

import psycopg2
from sqlalchemy import create_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine

from db_utils.postgres.deadline import Deadline
from db_utils.postgres.instrument import PoolState, PoolTimeoutError
from db_utils.postgres.lending import lend
from db_utils.postgres.proxy import PooledConnection
from db_utils.postgres.registry import pool_for
from db_utils.postgres.settings import resolve_settings

T = TypeVar("T")
#: Where a block's connection comes from: a URL, None (the default URL), or a callable returning one.
Source = str | URL | None | Callable[[], Any]

_getframe = sys._getframe

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


def borrow(url: str | URL | None = None, caller: FrameType | None = None) -> PooledConnection:
    """Check a connection out of the pool for ``url`` as a :class:`PooledConnection`; ``caller`` is the
    borrower's frame (default: this function's caller; db_utils frames are walked out of).

    Raises the driver's error (``psycopg2.OperationalError``) if no connection can be made, and
    :class:`~db_utils.postgres.instrument.PoolTimeoutError` if the pool stays exhausted for its timeout.
    """
    engine, state = pool_for(url)
    return lend(engine, state, caller or _getframe(1))


def open_source(source: Source, caller: FrameType | None = None) -> Any:
    """A connection from ``source`` (see module docs); raises rather than ever returning None."""
    if not callable(source):
        engine, state = pool_for(source)
        return lend(engine, state, caller or _getframe(1))
    connection = source()
    if connection is None:
        name = getattr(source, "__qualname__", None) or repr(source)
        raise psycopg2.OperationalError(
            f"{name}() returned None instead of a connection (legacy helpers return None when they "
            "cannot connect; see its log for the reason)"
        )
    return connection


def _checkout(engine: Engine, state: PoolState) -> PooledConnection:
    return lend(engine, state, _getframe(1))


class get_pooled_connection:
    """``with get_pooled_connection(source) as conn:`` commit on clean exit, roll back on exception,
    always close (return to the pool). A connection failure raises; it never yields None.

    ``source`` (keyword ``url``): a database URL, None (the default URL), or a callable returning a
    connection, e.g. ``get_pooled_connection(get_db_connection)`` with the application's own helper:
    see the module docs. Rollback on exception is what closing does (the pool's reset, or the server for
    a plain psycopg2 connection).

    A class rather than ``@contextmanager``: it sits on every request's hot path and this is cheaper.
    """

    __slots__ = ("_connection", "_url")

    def __init__(self, url: Source = None) -> None:
        self._url = url
        self._connection: Any = None

    def __enter__(self) -> Any:
        self._connection = open_source(self._url, _getframe(1))
        return self._connection

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if exc_type is None:
                if type(connection) is PooledConnection:
                    # The handle's closed and commit(), read and called on the real connection (no
                    # committing mark: nothing asks once it is closed).
                    raw = connection._raw
                    if raw is not None and not raw.closed:
                        raw.commit()
                elif not connection.closed:
                    connection.commit()
        finally:
            # On an exception, close() rolls back (the pool's reset does): no explicit rollback here, so
            # a failing rollback on a broken connection cannot mask the caller's exception.
            connection.close()


def execute_with_pool(operation: Callable[[Any], T], url: Source = None) -> T:
    """``operation(conn)`` inside :class:`get_pooled_connection`; its result is returned, errors propagate.

    ``url`` is any source :class:`get_pooled_connection` accepts (a URL, None, or a callable returning a
    connection)."""
    # Optimisation: get_pooled_connection's __enter__/__exit__ written out (no context-manager object).
    if callable(url):
        connection = open_source(url)
        try:
            result = operation(connection)
        except BaseException:
            connection.close()  # rolls back (the pool's reset does), as get_pooled_connection's __exit__
            raise
        try:
            if not connection.closed:
                connection.commit()
        finally:
            connection.close()
        return result
    engine, state = pool_for(url)
    # The lease ends in this frame's ``finally`` (owned): the handle needs no weak reference. A handle the
    # operation kept is closed all the same, and raises InterfaceError if used afterwards.
    handle = lend(engine, state, _getframe(1), owned=True)
    try:
        result = operation(handle)
        raw = handle._raw
        if raw is not None and not raw.closed:
            # The handle's commit(), without marking it as committing: nothing asks once it is closed.
            raw.commit()
    finally:
        handle.close()  # after an exception: rolls back (the pool's reset does)
    return result


def execute_with_pool_connection(
    operation: Callable[[Any], T],
    url: Source = None,
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
    ``deadline`` seconds of the first (default: ``DB_RETRY_DEADLINE``); ``retries`` also caps their
    number (default: no cap; 0 never retries). See the module docstring for what is never retried, and
    for ``idempotent``.

    ``url`` is any source :class:`get_pooled_connection` accepts; with a callable, each attempt calls
    it again, and its returning None counts as a failure to connect (retried).
    """
    if retries is not None and retries < 0:
        raise ValueError(f"retries={retries!r} must be >= 0")
    started = time.monotonic()
    try:
        # Resolved once: every attempt (and the error message's password scrub) uses this very pool.
        opener, password, default_deadline = _opener(url)
    except (psycopg2.Error, sa_exc.SQLAlchemyError) as error:
        return _error_result(error, 1, None)
    if deadline is None:
        deadline = default_deadline
    attempts = 0
    while True:
        attempts += 1
        try:
            result = _attempt(operation, opener, idempotent)
            return {"status": "success", "result": result, "attempts": attempts}
        except (psycopg2.Error, sa_exc.SQLAlchemyError) as error:
            delay = min(max_backoff, backoff * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
            out_of_time = time.monotonic() + delay - started > deadline
            out_of_tries = retries is not None and attempts > retries
            if not getattr(error, "poolshift_retryable", False) or out_of_tries or out_of_time:
                return _error_result(error, attempts, password)
        time.sleep(delay)


def _opener(source: Source) -> tuple[Callable[[], Any], str | None, float]:
    """What opens one attempt's connection, the password to scrub from errors, the retry deadline."""
    if callable(source):
        return functools.partial(open_source, source), None, resolve_settings().retry_deadline
    engine, state = pool_for(source)
    return functools.partial(_checkout, engine, state), engine.url.password, state.settings.retry_deadline


def _attempt(operation: Callable[[Any], T], opener: Callable[[], Any], idempotent: bool = False) -> T:
    """One attempt; marks the raised error ``poolshift_retryable`` when a retry is safe and useful."""
    try:
        connection = opener()
    except (psycopg2.OperationalError, sa_exc.DisconnectionError, sa_exc.InvalidRequestError) as error:
        # Could not connect (failover, restart; SQLAlchemy gives up after two reconnects in one checkout):
        # nothing ran, so retrying cannot repeat any work. A refusal that will not change (bad password,
        # unknown database) is not worth the deadline.
        # An exhausted pool already waited its timeout: waiting again is the caller's decision.
        permanent = isinstance(error, PoolTimeoutError) or any(
            reason in str(error) for reason in _PERMANENT_CONNECT_FAILURES
        )
        error.poolshift_retryable = not permanent  # type: ignore[union-attr]
        raise
    committing = False
    try:
        result = operation(connection)
        if not connection.closed:
            committing = True
            connection.commit()
    except psycopg2.Error as error:
        if not isinstance(error, _NEVER_RETRIED) and _is_disconnect(error, connection):
            # Retry only if the work surely died with the connection (see the module docstring).
            error.poolshift_retryable = idempotent or not _may_have_committed(connection, committing)
            if isinstance(connection, PooledConnection):
                # A disconnect usually means a restart or failover: every pooled connection older than
                # now is suspect. Mark them all for replacement (SQLAlchemy's Connection does the same).
                connection._invalidate_pool(error)
        raise
    finally:
        connection.close()  # rolls back on failure; a broken connection is discarded, not reused
    return result


def _may_have_committed(connection: Any, committing: bool) -> bool:
    """Could the work have committed before the connection died? The pooled handle knows (it saw every
    COMMIT sent on it); for a plain psycopg2 connection only our own commit and autocommit are known."""
    if isinstance(connection, PooledConnection):
        return bool(connection.may_have_committed)
    return committing or bool(getattr(connection, "autocommit", False))


def _is_disconnect(error: psycopg2.Error, connection: Any) -> bool:
    raw = connection._raw if isinstance(connection, PooledConnection) else connection
    return bool(_psycopg2_dialect().is_disconnect(error, raw, None))


@functools.cache
def _psycopg2_dialect() -> Any:
    """SQLAlchemy's psycopg2 dialect (for ``is_disconnect``; an engine that never connects)."""
    return create_engine("postgresql+psycopg2://").dialect


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
