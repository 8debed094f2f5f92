"""One SQLAlchemy engine (a dialect-built QueuePool) per database URL, and one per set of
``db_utils.postgres.connect`` parameters: registry, fork safety, stats, idle connections before
``DROP DATABASE``.

Engines are created lazily on first use and kept for the life of the process, because the point of a
pool is to outlive any single call. ``dispose_pools()`` closes them all (tests, shutdown, reconfiguring).
Where the URL and the settings come from is :mod:`db_utils.postgres.settings`. Pools keyed by
``connect()`` parameters are bounded (``DB_CONNECT_MAX_POOLS``): parameters that vary per call must not
grow pools without end.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine

from db_utils import stats
from db_utils.config import ConfigError
from db_utils.postgres import driver, lifecycle, statements, upstream
from db_utils.postgres.connecting import WarmUp
from db_utils.postgres.driver import TrackedConnection, neutralize_inherited_connections
from db_utils.postgres.instrument import InstrumentedQueuePool, PoolState, install
from db_utils.postgres.pgbouncer import TransactionPooledConnection, describe_mode
from db_utils.postgres.settings import (
    PoolSettings,
    connect_pool_limit,
    default_url_key,
    redact_url,
    resolve_settings,
    resolve_url,
)

logger = logging.getLogger("db_utils.pool")

# Registry guarded by _registry_lock: creation must happen once per URL even when many threads make
# their first call at the same moment. The hot path reads _by_argument without the lock (a dict read
# is atomic in CPython; an entry, once stored, never changes until dispose_pools() clears the dicts).
_engines: dict[str, tuple[Engine, PoolState]] = {}
_registry_lock = threading.Lock()
# Hot-path cache: the caller's ``url`` argument -> (engine, state); for the default URL the key is the raw
# values of the variables it is built from (``default_url_key``). Parsing a URL costs more than the
# rest of a checkout, so only a change of those values costs a parse.
_by_argument: dict[object, tuple[Engine, PoolState]] = {}
_ARGUMENT_CACHE_LIMIT = 256
# Pools of db_utils.postgres.connect, keyed by its parameters (guarded and read like _engines).
_by_parameters: dict[Hashable, tuple[Engine, PoolState]] = {}


def get_connection_pool(url: str | URL | None = None, **settings: Any) -> Engine:
    """The engine for ``url``, created on first use.

    Without ``url``: :func:`~db_utils.postgres.settings.default_database_url`, from the environment.

    Settings (``pool_size``, ``max_overflow``, ``timeout``, ``recycle``, ``pre_ping``, ``ping_after``)
    only apply when the pool is created; asking again for the same URL with *different* explicit
    settings raises :class:`ConfigError` rather than silently ignoring them.
    """
    if not settings:
        return pool_for(url)[0]
    key = default_url_key() if url is None else url
    entry = _by_argument.get(key)
    if entry is None:
        return _lookup_or_create(url, key, settings)[0]
    _check_same_settings(entry[1], resolve_settings(**settings))
    return entry[0]


def pool_for(url: str | URL | None = None) -> tuple[Engine, PoolState]:
    """Engine and poolshift state for ``url``: the lookup behind every public entry point (with no
    ``**settings`` parameter: an empty dict built on every pooled call costs more than the lookup)."""
    key = default_url_key() if url is None else url
    entry = _by_argument.get(key)
    if entry is None:
        entry = _lookup_or_create(url, key, {})
    return entry


def _lookup_or_create(
    url: str | URL | None, cache_key: object, settings: dict[str, Any]
) -> tuple[Engine, PoolState]:
    resolved = resolve_url(url)
    key = resolved.render_as_string(hide_password=False)
    with _registry_lock:
        entry = _engines.get(key)
        if entry is None:
            entry = _create(resolved, resolve_settings(**settings))
            _engines[key] = entry
        elif settings:
            _check_same_settings(entry[1], resolve_settings(**settings))
        if len(_by_argument) >= _ARGUMENT_CACHE_LIMIT:
            _by_argument.clear()
        _by_argument[cache_key] = entry
    return entry


def _check_same_settings(state: PoolState, settings: PoolSettings) -> None:
    if settings == state.settings:
        return
    raise ConfigError(
        f"a pool for {state.display_url} already exists with different settings ({state.settings}); "
        f"requested ({settings}). Call dispose_pools() first to rebuild it"
    )


def _create(url: URL, settings: PoolSettings) -> tuple[Engine, PoolState]:
    connection_class = _CONNECTION_CLASSES[settings.mode]
    return _build(url, settings, redact_url(url), connect_args={"connection_factory": connection_class})


def _build(url: URL | str, settings: PoolSettings, display: str, **options: Any) -> tuple[Engine, PoolState]:
    engine = create_engine(
        url,
        poolclass=InstrumentedQueuePool,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.timeout,
        pool_recycle=settings.recycle,
        # Validation is done by our checkout listener, only for idle connections (see instrument.py).
        pool_pre_ping=False,
        # Our reset listener does the rollback (skipping it when the transaction is already idle).
        pool_reset_on_return=None,
        # LIFO hands out the most recently used connection: it most likely skips the ping, and idle
        # ones at the bottom age out of server/firewall idle timeouts without being touched.
        pool_use_lifo=True,
        # Statement parameters may be secrets: keep them out of SQLAlchemy's error messages.
        hide_parameters=True,
        # Legacy psycopg2 code sees hstore as text: do not let the dialect register its typecaster.
        use_native_hstore=False,
        **options,
    )
    state = PoolState(display_url=display, settings=settings)
    install(engine, state)
    state.upstream = upstream.watch(engine.pool)
    lifecycle.created(state)
    _start_warm_up(engine, state)
    return engine, state


def _start_warm_up(engine: Engine, state: PoolState) -> None:
    """Open ``min_idle`` connections in the background; only the first ``pool_size`` are kept, so no more."""
    target = min(state.settings.min_idle, state.settings.pool_size)
    if target > 0:
        pool = engine.pool
        pool.warm_up = WarmUp(pool, target, state.display_url, engine.url.password).start()  # type: ignore[attr-defined]


# What a pool's connections are, by DB_POOL_MODE: behind a transaction-pooling PgBouncer, ones whose
# session state ends with each transaction.
_CONNECTION_CLASSES: dict[str, type] = {"local": TrackedConnection, "pgbouncer": TransactionPooledConnection}


def parameters_pool(
    key: Hashable, display: Callable[[], str], open_as: Callable[[type], Any]
) -> tuple[Engine, PoolState] | None:
    """The pool of ``db_utils.postgres.connect`` for ``key``, created on first use.

    ``open_as(base)`` opens one connection whose class derives from ``base``, the pool's connection class
    for its ``DB_POOL_MODE`` (as for URL pools). ``display`` gives the password-free name shown in
    ``pool_status()`` and errors. At the ``DB_CONNECT_MAX_POOLS`` bound, the least recently used pool
    with nothing checked out is disposed to make room; if every pool has connections checked out,
    returns None (the caller does not pool).
    """
    entry = _by_parameters.get(key)
    if entry is None:
        evicted: tuple[Engine, PoolState] | None = None
        with _registry_lock:
            entry = _by_parameters.get(key)
            if entry is None:
                if len(_by_parameters) >= connect_pool_limit():
                    evicted = _evict_least_recently_used()
                    if evicted is None:
                        return None
                # A "postgresql+psycopg2://" URL with a creator: the dialect (pre-ping, is_disconnect)
                # without a URL; the connection parameters stay exactly the caller's.
                settings = resolve_settings()
                creator = functools.partial(open_as, _CONNECTION_CLASSES[settings.mode])
                entry = _build("postgresql+psycopg2://", settings, display(), creator=creator)
                _by_parameters[key] = entry
        if evicted is not None:
            evicted[0].dispose()  # closing its connections is I/O: outside the lock
            lifecycle.disposed(evicted[1])
    entry[1].last_used = time.monotonic()
    return entry


def _evict_least_recently_used() -> tuple[Engine, PoolState] | None:
    """Forget the least recently used idle ``connect()`` pool (lock held) and return it; None if none is."""
    idle = [
        (state.last_used, key)
        for key, (engine, state) in _by_parameters.items()
        if engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    ]
    if not idle:
        return None
    engine, state = _by_parameters.pop(min(idle, key=lambda pair: pair[0])[1])
    logger.info("disposing the least recently used pool %s (DB_CONNECT_MAX_POOLS reached)", state.display_url)
    return engine, state


def close_idle_connections_to(database: str) -> int:
    """Close the idle connections of every pool connected to ``database``; returns how many.

    Called before ``DROP DATABASE``, ``ALTER DATABASE ... RENAME`` or ``CREATE DATABASE ... TEMPLATE``
    names it: these fail while other sessions are connected, and idle pooled connections are sessions
    the legacy code never had. Checked-out connections are left alone (the server's error is then the
    one legacy code got too). Pools are matched by database name only: on another server a same-named
    database's pool merely reconnects.
    """
    closed = 0
    for engine, state in registered_pools():
        if state.database == database:
            closed += engine.pool.close_idle()  # type: ignore[attr-defined]
    if closed:
        logger.info(
            "closed %d idle pooled connection(s) to database %r before it is dropped/renamed",
            closed,
            database,
        )
    return closed


def dispose_pools() -> int:
    """Close every pool's idle connections and forget all pools; returns how many were disposed.

    Connections still checked out are closed when returned. The next call creates fresh pools, reading
    the ``DB_POOL_*`` sizing settings again.
    """
    with _registry_lock:
        entries = [*_engines.values(), *_by_parameters.values()]
        _engines.clear()
        _by_argument.clear()
        _by_parameters.clear()
    for engine, state in entries:
        engine.dispose()
        lifecycle.disposed(state)
    # The SQLite and HTTP pools too, if the app imported them: they registered their disposers.
    stats.dispose_registered()
    statements.read_declared_functions()
    return len(entries)


def registered_pools() -> list[tuple[Engine, PoolState]]:
    """Every live (engine, state) pair, for status and health reporting."""
    return [*_engines.values(), *_by_parameters.values()]


def _pool_figures(engine: Engine, state: PoolState) -> dict[str, Any]:
    pool = engine.pool
    figures = state.counters.snapshot()
    size, max_overflow = state.settings.pool_size, state.settings.max_overflow
    # The pool's own count is authoritative (it sees detached/invalidated records the events may not).
    checked_out = pool.checkedout()  # type: ignore[attr-defined]
    figures.update(
        pool_size=size,
        max_overflow=max_overflow,
        timeout=state.settings.timeout,
        checked_out=checked_out,
        idle=pool.checkedin(),  # type: ignore[attr-defined]
        # Connection attempts in flight, and waiting for a slot under DB_POOL_MAX_CONNECTING.
        connecting=pool.connect_gate.connecting,  # type: ignore[attr-defined]
        connect_queued=pool.connect_gate.queued,  # type: ignore[attr-defined]
        waiting=pool.waiting(),  # type: ignore[attr-defined]
        # QueuePool.overflow() starts at -pool_size: only connections beyond the core count are overflow.
        overflow=max(0, pool.overflow()),  # type: ignore[attr-defined]
        utilization=round(checked_out / (size + max_overflow), 4),
        avg_wait_ms=round(1000 * figures["wait_time_total"] / figures["waits"], 3)
        if figures["waits"]
        else 0.0,
    )
    found = None if state.upstream is None else state.upstream.upstream
    figures.update(
        pgbouncer=describe_mode(state.settings.mode, None if found is None else found.pooler),
        server=upstream.server_figures(found),
    )
    return figures


def postgres_stats() -> dict[str, Any]:
    """Figures of every PostgreSQL pool, keyed by its password-free URL (the ``postgres`` stats source)."""
    result: dict[str, Any] = {}
    for engine, state in registered_pools():
        key, n = state.display_url, 2
        while key in result:  # same URL apart from the (hidden) password
            key, n = f"{state.display_url} #{n}", n + 1
        result[key] = _pool_figures(engine, state)
    upstream.add_server_sums(result.values())
    return result


def _after_fork_in_child() -> None:
    """A forked child must never share its parent's sockets: neutralize them, start empty pools."""
    global _registry_lock  # noqa: PLW0603 - a lock held by another thread at fork() stays held forever
    _registry_lock = threading.Lock()
    neutralize_inherited_connections()
    for engine, state in registered_pools():
        state.counters = state.counters.fresh()
        engine.dispose(close=False)  # new pool, same listeners; never closes the parent's connections


driver.before_database_ddl = close_idle_connections_to
stats.register_source("postgres", postgres_stats)
os.register_at_fork(after_in_child=_after_fork_in_child)
