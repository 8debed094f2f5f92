"""Settings resolution: explicit arguments, then environment variables, then documented defaults.

Every value read from the environment is validated here, once, and a bad one raises :class:`ConfigError`
naming the variable and the offending value, so a typo in a deployment manifest fails loudly at first use
instead of surfacing later as an odd pool behavior. Values that may carry a password (``DATABASE_URL``) are
never echoed back: the error shows the URL with its password masked.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

_Number = TypeVar("_Number", int, float)


class ConfigError(ValueError):
    """A setting has a value poolshift cannot use. The message names the setting and the value."""


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def env_int(name: str, default: int, *, minimum: int, environ: Mapping[str, str] | None = None) -> int:
    """An integer setting from ``name`` in the environment, at least ``minimum``."""
    raw = _environ(environ).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not an integer (default {default}, minimum {minimum})"
        ) from None
    return check_minimum(name, value, minimum)


def env_float(
    name: str, default: float, *, minimum: float, environ: Mapping[str, str] | None = None
) -> float:
    """A number setting (seconds, usually) from ``name`` in the environment, at least ``minimum``."""
    raw = _environ(environ).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number (default {default}, minimum {minimum})") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} is not a finite number")
    return check_minimum(name, value, minimum)


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    """A boolean setting: 1/true/yes/on or 0/false/no/off, case-insensitive."""
    raw = _environ(environ).get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def check_minimum(name: str, value: _Number, minimum: _Number) -> _Number:
    """Reject values below ``minimum``, naming the setting; returns ``value`` unchanged otherwise."""
    if value < minimum:
        raise ConfigError(f"{name}={value!r} is below the minimum of {minimum}")
    return value


def redact_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***``: the only form a URL may take in output."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


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
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    if not url.drivername.startswith(("postgresql", "sqlite")):
        raise ConfigError(
            f"{source} uses the unsupported scheme {url.drivername!r} (expected postgresql:// or sqlite://): "
            f"{redact_url(url)}"
        )
    return url


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


@dataclass(frozen=True)
class PoolSettings:
    """Sizing and health settings of one database pool. Field docs are the README's settings table.

    Defaults follow SQLAlchemy's and HikariCP's reasoning: a small core (10) that is enough for most
    services, a bounded overflow (20) for bursts, a 30 s checkout timeout that fails fast enough to be
    noticed, recycle every hour (below typical firewall/PgBouncer idle cut-offs), and pre-ping on, because a
    stale connection handed to legacy code is an error the legacy code never had to handle.
    """

    pool_size: int = 10
    max_overflow: int = 20
    timeout: float = 30.0
    recycle: int = 3600
    pre_ping: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **explicit: Any) -> PoolSettings:
        """Resolve settings: explicit keyword arguments win, then ``DB_*`` variables, then defaults."""
        unknown = set(explicit) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown pool setting(s): {', '.join(sorted(unknown))}")
        base = cls(
            pool_size=env_int("DB_POOL_SIZE", cls.pool_size, minimum=1, environ=environ),
            max_overflow=env_int("DB_MAX_OVERFLOW", cls.max_overflow, minimum=0, environ=environ),
            timeout=env_float("DB_POOL_TIMEOUT", cls.timeout, minimum=0.0, environ=environ),
            recycle=env_int("DB_POOL_RECYCLE", cls.recycle, minimum=-1, environ=environ),
            pre_ping=env_bool("DB_POOL_PRE_PING", cls.pre_ping, environ=environ),
        )
        resolved = replace(base, **{k: v for k, v in explicit.items() if v is not None})
        resolved.validate()
        return resolved

    def validate(self) -> None:
        """Check explicit arguments with the same rules the environment gets."""
        check_minimum("pool_size", self.pool_size, 1)
        check_minimum("max_overflow", self.max_overflow, 0)
        check_minimum("timeout", self.timeout, 0.0)
        check_minimum("recycle", self.recycle, -1)
