"""Everything a PostgreSQL pool is configured by: its URL and its knobs, each resolved in one place.

URL: given, else ``DATABASE_URL``, else each legacy parameter from ``POSTGRES_*``, else libpq ``PG*``,
else a default (:data:`LEGACY_PARAMETERS`), so code rewritten from ``get_postgres_connection()`` to
``get_pooled_connection()`` keeps talking to the same database and shares the same pool. The legacy
parameter table is the one home of that precedence: the codemods import it to decide whether a
home-grown helper connects where the shim would.

Knobs: each is one field of :class:`PoolSettings`, declared with its ``DB_*`` variable, its reader and its
minimum; a new knob is one field here and one use where the pool is built. Values that may carry a
password are never echoed back: errors show URLs with the password masked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, TypeVar

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from db_utils.config import (
    ConfigError,
    EnvironSignature,
    check_minimum,
    env_bool,
    env_choice,
    env_float,
    env_int,
    raw_environ,
)

_T = TypeVar("_T", int, float, bool, str)


class LegacyParameter(NamedTuple):
    """One ``psycopg2.connect`` parameter as a legacy helper reads it: variable, libpq's, default."""

    keyword: str  # psycopg2.connect keyword
    variable: str  # POSTGRES_* variable, read first
    libpq_variable: str  # libpq PG* variable, read when the first is unset or blank
    default: str | None  # when both are unset or blank; None: no password (libpq may find one in ~/.pgpass)


#: Each legacy parameter, in psycopg2.connect order. A codemod rule relies on exactly this precedence
#: to decide that a home-grown helper is equivalent: do not change it lightly.
LEGACY_PARAMETERS: tuple[LegacyParameter, ...] = (
    LegacyParameter("host", "POSTGRES_HOST", "PGHOST", "localhost"),
    LegacyParameter("port", "POSTGRES_PORT", "PGPORT", "5432"),
    LegacyParameter("dbname", "POSTGRES_DB", "PGDATABASE", "postgres"),
    LegacyParameter("user", "POSTGRES_USER", "PGUSER", "postgres"),
    LegacyParameter("password", "POSTGRES_PASSWORD", "PGPASSWORD", None),
)

# psycopg2.connect keyword -> URL.create field, where the two differ.
_URL_FIELDS = {"dbname": "database", "user": "username"}

#: The raw values :func:`default_database_url` is built from: equal signatures, equal URLs. The legacy
#: helpers read their variables on every call (a deploy that points them elsewhere, or a test that does,
#: is obeyed at once), so the default URL is re-checked on every call too, and only a change is re-parsed.
default_url_signature = EnvironSignature(
    ("DATABASE_URL", *(name for p in LEGACY_PARAMETERS for name in (p.variable, p.libpq_variable)))
)
# DATABASE_URL as a key of raw_environ() (what os.environ's ``encodekey`` makes of the name).
_RAW_DATABASE_URL: Any = getattr(os.environ, "encodekey", str)("DATABASE_URL")


def default_url_key() -> object:
    """A key equal across calls exactly when :func:`default_database_url` would be: the raw DATABASE_URL
    when it is set (it then decides alone), else :data:`default_url_signature`'s eleven values.

    Cheaper than the signature on the path of every pooled call without a URL (one dict read instead of
    eleven); a raw ``bytes`` value on POSIX, never equal to a ``str``/``URL``/tuple key of the registry.
    """
    environ = raw_environ()
    if environ is not None:
        raw = environ.get(_RAW_DATABASE_URL)
        if raw is not None and raw.strip():
            return raw
    return default_url_signature()


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
    for parameter in LEGACY_PARAMETERS:
        values[_URL_FIELDS.get(parameter.keyword, parameter.keyword)] = (
            (env.get(parameter.variable) or "").strip()
            or (env.get(parameter.libpq_variable) or "").strip()
            or parameter.default
        )
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


def parse_database_url(raw: str, *, source: str = "DATABASE_URL") -> URL:
    """Parse a database URL, rewriting ``postgres://``/``postgresql://`` to the psycopg2 driver.

    ``source`` names where the URL came from, for the error message; the URL itself is only shown
    redacted, because a malformed URL may still contain a password.
    """
    text = raw.strip()
    if text.startswith("postgres://"):
        # Heroku-style scheme; SQLAlchemy 2 no longer accepts it.
        text = "postgresql://" + text[len("postgres://") :]
    try:
        url = make_url(text)
    except ArgumentError:
        raise ConfigError(f"{source} is not a valid database URL: {_mask_unparsed(text)}") from None
    except ValueError:  # SQLAlchemy's int() of a port that is not a number
        raise ConfigError(f"{source} has a port that is not a number: {_mask_unparsed(text)}") from None
    if url.host and "@" in url.host:
        # ``user:p@ss@host``: the parser splits at the first ``@`` and the password's tail becomes part of
        # the host, then of every display of the URL. Nothing of it is shown here.
        raise ConfigError(
            f"{source} has an unencoded '@' in its user name or password: write it as %40 "
            "(urllib.parse.quote(password, safe=''))"
        )
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    if not url.drivername.startswith(("postgresql", "sqlite")):
        raise ConfigError(
            f"{source} uses the unsupported scheme {url.drivername!r} (expected postgresql:// or sqlite://): "
            f"{redact_url(url)}"
        )
    return url


def redact_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***``: the only form a URL may take in output."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def _mask_unparsed(text: str) -> str:
    """Mask anything between ``://user:`` and ``@`` in a string that did not even parse as a URL."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return "<not a URL>"
    credentials, at, host = rest.rpartition("@")
    if not at:
        return f"{scheme}://{rest}"
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


# -- pool knobs -----------------------------------------------------------------------------------------


def _knob(
    default: _T,
    variable: str,
    reader: Callable[..., Any],
    *,
    minimum: _T | None = None,
    alias: str | None = None,
) -> _T:
    """A :class:`PoolSettings` field: its ``DB_*`` variable, the reader that validates it, its minimum
    (for explicit arguments too) and SQLAlchemy's ``pool_*`` spelling, if it has one."""
    metadata = {"variable": variable, "reader": reader, "minimum": minimum, "alias": alias}
    return field(default=default, metadata=metadata)


#: What the pool's connections lead to. ``local``: PostgreSQL itself (or PgBouncer in session pooling),
#: where a connection's session is the pool's own. ``pgbouncer``: a transaction-pooling PgBouncer, where a
#: session is shared with other clients between transactions (see :mod:`db_utils.postgres.pgbouncer`).
POOL_MODES = ("local", "pgbouncer")


def env_pool_mode(variable: str, default: str) -> str:
    return env_choice(variable, default, POOL_MODES)


# Chosen from bench/bench_load.py runs (bench/README.md, "Warm-up and the connect cap").
MIN_IDLE_DEFAULT = 0
MAX_CONNECTING_DEFAULT = 4


@dataclass(frozen=True)
class PoolSettings:
    """Sizing and health settings of one PostgreSQL pool. Field docs are the README's settings table.

    Defaults follow SQLAlchemy's and HikariCP's reasoning: a small core (10) that is enough for most
    services, a bounded overflow (20) for bursts, a 30 s checkout timeout that fails fast enough to be
    noticed, recycle every hour (below typical firewall/PgBouncer idle cut-offs), and pre-ping on, because a
    stale connection handed to legacy code is an error the legacy code never had to handle. ``ping_after``
    is HikariCP's rule: only connections idle at least that long (HikariCP uses 500 ms) are pinged.
    """

    pool_size: int = _knob(10, "DB_POOL_SIZE", env_int, minimum=1)
    max_overflow: int = _knob(20, "DB_MAX_OVERFLOW", env_int, minimum=0)
    timeout: float = _knob(30.0, "DB_POOL_TIMEOUT", env_float, minimum=0.0, alias="pool_timeout")
    recycle: int = _knob(3600, "DB_POOL_RECYCLE", env_int, minimum=-1, alias="pool_recycle")
    pre_ping: bool = _knob(True, "DB_POOL_PRE_PING", env_bool, alias="pool_pre_ping")
    ping_after: float = _knob(0.5, "DB_POOL_PING_AFTER", env_float, minimum=0.0)
    mode: str = _knob("local", "DB_POOL_MODE", env_pool_mode)
    #: Connections opened in the background when the pool is created, and kept (psycopg_pool's
    #: ``min_size``, HikariCP's ``minimumIdle``); at most ``pool_size`` of them, since only those are kept.
    min_idle: int = _knob(MIN_IDLE_DEFAULT, "DB_POOL_MIN_IDLE", env_int, minimum=0)
    #: Connection attempts of one pool in flight at once: a burst queues for a handshake slot instead of
    #: running every scram handshake at the same time.
    max_connecting: int = _knob(MAX_CONNECTING_DEFAULT, "DB_POOL_MAX_CONNECTING", env_int, minimum=1)
    #: Bound on the checkout ping and health_check()'s query: past it the socket is shut down, the
    #: connection invalidated and the caller gets a fresh connection or an error (a hung server must not
    #: hang callers forever).
    ping_timeout: float = _knob(5.0, "DB_POOL_PING_TIMEOUT", env_float, minimum=0.25)
    #: HikariCP's leakDetectionThreshold: warn once per lease held longer than this (0: off).
    leak_threshold: float = _knob(0.0, "DB_POOL_LEAK_THRESHOLD", env_float, minimum=0.0)
    #: How long execute_with_pool_connection keeps retrying connection failures (seconds).
    retry_deadline: float = _knob(10.0, "DB_RETRY_DEADLINE", env_float, minimum=0.0)

    def __post_init__(self) -> None:
        if self.mode not in POOL_MODES:
            raise ConfigError(f"mode={self.mode!r} is not one of: {', '.join(POOL_MODES)}")


_KNOBS = {knob.name: knob for knob in fields(PoolSettings)}
_ALIASES = {knob.metadata["alias"]: name for name, knob in _KNOBS.items() if knob.metadata["alias"]}


def resolve_settings(**explicit: Any) -> PoolSettings:
    """Explicit keyword arguments (None: not given) > ``DB_*`` variables > defaults.

    SQLAlchemy's ``pool_*`` names are accepted; every value, explicit or not, meets the same minimum.
    """
    named = {_ALIASES.get(key, key): value for key, value in explicit.items()}
    unknown = set(named) - set(_KNOBS)
    if unknown:
        known = ", ".join(sorted(_KNOBS))
        raise TypeError(f"unknown pool setting(s): {', '.join(sorted(unknown))} (known: {known})")
    resolved: dict[str, Any] = {}
    for name, knob in _KNOBS.items():
        # The variable is read (and checked) even when an explicit value wins: a bad deployment value
        # fails loudly wherever the pool is created.
        resolved[name] = _from_environment(knob.metadata, knob.default)
        value = named.get(name)
        if value is not None:
            minimum = knob.metadata["minimum"]
            resolved[name] = value if minimum is None else check_minimum(name, value, minimum)
    return PoolSettings(**resolved)


def connect_pool_limit() -> int:
    """How many pools ``db_utils.postgres.connect`` keeps (one per distinct set of parameters).

    Read when a pool is about to be created; beyond it the least recently used idle pool is disposed.
    """
    return env_int("DB_CONNECT_MAX_POOLS", 16, minimum=1)


def _from_environment(metadata: Mapping[str, Any], default: Any) -> Any:
    if metadata["minimum"] is None:
        return metadata["reader"](metadata["variable"], default)
    return metadata["reader"](metadata["variable"], default, minimum=metadata["minimum"])
