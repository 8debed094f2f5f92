"""One SQLAlchemy engine (a dialect-built QueuePool) per database URL: registry, settings, fork safety.

Engines are created lazily on first use and kept for the life of the process, because the point of a
pool is to outlive any single call. ``dispose_pools()`` closes them all (tests, shutdown, reconfiguring).

The URL used when none is given is resolved exactly like the legacy helper resolves its parameters
(:func:`default_database_url`), so code rewritten from ``get_postgres_connection()`` to
``get_pooled_connection()`` keeps talking to the same database and shares the same pool.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine

from db_utils import stats
from db_utils._pg_driver import TrackedConnection, neutralize_inherited_connections
from db_utils._pg_instrument import InstrumentedQueuePool, PoolState, install
from db_utils.config import ConfigError, PoolSettings, env_float, parse_database_url, redact_url

#: Seconds a connection may sit idle before a checkout validates it (HikariCP uses 500 ms).
DEFAULT_PING_AFTER = 0.5

# Each legacy parameter: (POSTGRES_* name, libpq PG* name, default). A codemod rule relies on exactly
# this precedence to decide that a home-grown helper is equivalent: do not change it lightly.
_LEGACY_PARAMETERS = (
    ("host", "POSTGRES_HOST", "PGHOST", "localhost"),
    ("port", "POSTGRES_PORT", "PGPORT", "5432"),
    ("database", "POSTGRES_DB", "PGDATABASE", "postgres"),
    ("username", "POSTGRES_USER", "PGUSER", "postgres"),
    ("password", "POSTGRES_PASSWORD", "PGPASSWORD", None),
)
_SETTING_ALIASES = {"pool_timeout": "timeout", "pool_recycle": "recycle", "pool_pre_ping": "pre_ping"}
_SETTING_NAMES = frozenset(f.name for f in fields(PoolSettings)) | {"ping_after"}

# Registry guarded by _registry_lock: creation must happen once per URL even when many threads make
# their first call at the same moment. The hot path reads _by_argument without the lock (a dict read
# is atomic in CPython; an entry, once stored, never changes until dispose_pools() clears the dicts).
_engines: dict[str, tuple[Engine, PoolState]] = {}
_registry_lock = threading.Lock()
# Hot-path cache: the caller's ``url`` argument -> (engine, state); for the default URL the key is the raw
# values of the variables it is built from. Parsing a URL costs tens of microseconds, more than the rest
# of a checkout, but the legacy helpers this replaces read POSTGRES_* on *every* call (a deploy that
# points them elsewhere, or a test that does, must be obeyed at once), so the raw values are read on
# every call (a few microseconds) and only a change of them costs a parse.
_by_argument: dict[object, tuple[Engine, PoolState]] = {}
_DEFAULT_URL_VARIABLES = (
    "DATABASE_URL",
    *(name for _key, primary, libpq, _default in _LEGACY_PARAMETERS for name in (primary, libpq)),
)
_ARGUMENT_CACHE_LIMIT = 256


def default_database_url(environ: Mapping[str, str] | None = None) -> URL:
    """``DATABASE_URL`` if set; else each parameter from ``POSTGRES_*``, else libpq ``PG*``, else defaults.

    Blank variables count as unset. The defaults are localhost, 5432, database ``postgres``, user
    ``postgres`` and no password (libpq may still find one in ``~/.pgpass``).
    """
    env = os.environ if environ is None else environ
    raw = env.get("DATABASE_URL", "").strip()
    if raw:
        return parse_database_url(raw, source="DATABASE_URL")
    values: dict[str, Any] = {}
    for key, primary, libpq, default in _LEGACY_PARAMETERS:
        values[key] = (env.get(primary) or "").strip() or (env.get(libpq) or "").strip() or default
    return URL.create("postgresql+psycopg2", port=_port(values.pop("port"), env), **values)


def _port(raw: str, env: Mapping[str, str]) -> int:
    source = "POSTGRES_PORT" if (env.get("POSTGRES_PORT") or "").strip() else "PGPORT"
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{source}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{source}={raw!r} is not a port number (1-65535)")
    return port


def resolve_url(url: str | URL | None) -> URL:
    """The psycopg2 URL for ``url`` (or the default one from the environment)."""
    if url is None:
        resolved = default_database_url()
    elif isinstance(url, URL):
        resolved = parse_database_url(url.render_as_string(hide_password=False), source="url")
    else:
        resolved = parse_database_url(url, source="url")
    if not resolved.drivername.startswith("postgresql+psycopg2"):
        raise ConfigError(
            f"db_utils pools need a postgresql:// (psycopg2) URL, got {redact_url(resolved)}; "
            "for SQLite use db_utils.sqlite.connect"
        )
    return resolved


def resolve_settings(**explicit: Any) -> tuple[PoolSettings, float]:
    """Explicit keyword arguments > ``DB_*`` variables > defaults; SQLAlchemy's ``pool_*`` names accepted."""
    named = {_SETTING_ALIASES.get(key, key): value for key, value in explicit.items()}
    unknown = set(named) - _SETTING_NAMES
    if unknown:
        known = ", ".join(sorted(_SETTING_NAMES))
        raise TypeError(f"unknown pool setting(s): {', '.join(sorted(unknown))} (known: {known})")
    ping_after = named.pop("ping_after", None)
    if ping_after is None:
        ping_after = env_float("DB_POOL_PING_AFTER", DEFAULT_PING_AFTER, minimum=0.0)
    elif ping_after < 0:
        raise ConfigError(f"ping_after={ping_after!r} is below the minimum of 0")
    return PoolSettings.from_env(**named), float(ping_after)


def get_connection_pool(url: str | URL | None = None, **settings: Any) -> Engine:
    """The engine for ``url`` (default: :func:`default_database_url`), created on first use.

    Settings (``pool_size``, ``max_overflow``, ``timeout``, ``recycle``, ``pre_ping``, ``ping_after``)
    only apply when the pool is created; asking again for the same URL with *different* explicit
    settings raises :class:`ConfigError` rather than silently ignoring them.
    """
    return pool_for(url, **settings)[0]


def pool_for(url: str | URL | None = None, **settings: Any) -> tuple[Engine, PoolState]:
    """Engine and poolshift state for ``url``: the lookup behind every public entry point."""
    key = _default_url_signature() if url is None else url
    entry = _by_argument.get(key)
    if entry is None:
        entry = _lookup_or_create(url, key, settings)
    elif settings:
        _check_same_settings(entry[1], resolve_settings(**settings))
    return entry


def _default_url_signature() -> tuple[str | bytes | None, ...]:
    """The raw values :func:`default_database_url` is built from: equal signatures, equal URLs."""
    environ = os.environ
    # Optimisation (hot path, every call without a url): ``os.environ.get`` costs ~1 us per variable
    # (Mapping.get -> __getitem__ -> encode key -> decode value), 8-14 us for the eleven variables,
    # about a tenth of a whole pooled SELECT 1. CPython's ``os.environ`` keeps its contents in ``_data``,
    # a plain dict keyed by ``encodekey(name)``, updated by every change made through os.environ (set, del,
    # pop, clear, update; never replaced), so reading that dict sees exactly what ``get`` would see, undecoded
    # (bytes on POSIX): equal raw values still mean equal URLs, for ~0.5 us. Anything else standing in
    # for os.environ (a replaced mapping) takes the plain path.
    if environ is _ENVIRON_AT_IMPORT and type(_ENVIRON_DATA) is dict and _ENCODED_URL_VARIABLES:
        return tuple(map(_ENVIRON_DATA.get, _ENCODED_URL_VARIABLES))
    return tuple([environ.get(name) for name in _DEFAULT_URL_VARIABLES])


_ENVIRON_AT_IMPORT = os.environ
_ENVIRON_DATA = getattr(os.environ, "_data", None)
_ENCODE_KEY = getattr(os.environ, "encodekey", None)  # CPython's; elsewhere the plain path is taken
_ENCODED_URL_VARIABLES = tuple(map(_ENCODE_KEY, _DEFAULT_URL_VARIABLES)) if _ENCODE_KEY else ()


def _lookup_or_create(
    url: str | URL | None, cache_key: object, settings: dict[str, Any]
) -> tuple[Engine, PoolState]:
    resolved = resolve_url(url)
    key = resolved.render_as_string(hide_password=False)
    with _registry_lock:
        entry = _engines.get(key)
        if entry is None:
            entry = _create(resolved, *resolve_settings(**settings))
            _engines[key] = entry
        elif settings:
            _check_same_settings(entry[1], resolve_settings(**settings))
        if len(_by_argument) >= _ARGUMENT_CACHE_LIMIT:
            _by_argument.clear()
        _by_argument[cache_key] = entry
    return entry


def _check_same_settings(state: PoolState, wanted: tuple[PoolSettings, float]) -> None:
    settings, ping_after = wanted
    if settings == state.settings and ping_after == state.ping_after:
        return
    raise ConfigError(
        f"a pool for {state.display_url} already exists with different settings ({state.settings}, "
        f"ping_after={state.ping_after}); requested ({settings}, ping_after={ping_after}). "
        "Call dispose_pools() first to rebuild it"
    )


def _create(url: URL, settings: PoolSettings, ping_after: float) -> tuple[Engine, PoolState]:
    engine = create_engine(
        url,
        poolclass=InstrumentedQueuePool,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.timeout,
        pool_recycle=settings.recycle,
        # Validation is done by our checkout listener, only for idle connections (see _pg_instrument).
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
        connect_args={"connection_factory": TrackedConnection},
    )
    state = PoolState(display_url=redact_url(url), settings=settings, ping_after=ping_after)
    install(engine, state)
    return engine, state


def dispose_pools() -> int:
    """Close every pool's idle connections and forget all pools; returns how many were disposed.

    Connections still checked out are closed when returned. The next call creates fresh pools, reading
    the ``DB_POOL_*`` sizing settings again.
    """
    with _registry_lock:
        entries = list(_engines.values())
        _engines.clear()
        _by_argument.clear()
    for engine, _state in entries:
        engine.dispose()
    # The SQLite and HTTP pools too, but only if the app imported them: importing them here would add
    # their cost (and their at-fork hooks) to apps that never use them.
    for module_name in ("db_utils.sqlite", "db_utils.http"):
        module = sys.modules.get(module_name)
        if module is not None:
            module.dispose()
    return len(entries)


def registered_pools() -> list[tuple[Engine, PoolState]]:
    """Every live (engine, state) pair, for status and health reporting."""
    return list(_engines.values())


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
        # QueuePool.overflow() starts at -pool_size: only connections beyond the core count are overflow.
        overflow=max(0, pool.overflow()),  # type: ignore[attr-defined]
        utilization=round(checked_out / (size + max_overflow), 4),
        avg_wait_ms=round(1000 * figures["wait_time_total"] / figures["waits"], 3)
        if figures["waits"]
        else 0.0,
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
    return result


def _after_fork_in_child() -> None:
    """A forked child must never share its parent's sockets: neutralize them, start empty pools."""
    global _registry_lock  # noqa: PLW0603 - a lock held by another thread at fork() stays held forever
    _registry_lock = threading.Lock()
    neutralize_inherited_connections()
    for engine, state in list(_engines.values()):
        state.counters = type(state.counters)()
        engine.dispose(close=False)  # new pool, same listeners; never closes the parent's connections


stats.register_source("postgres", postgres_stats)
os.register_at_fork(after_in_child=_after_fork_in_child)
