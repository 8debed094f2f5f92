"""Reading settings from the environment: :class:`ConfigError`, the typed readers, change detection.

Every value read from the environment is validated here, once, and a bad one raises :class:`ConfigError`
naming the variable and the offending value, so a typo in a deployment manifest fails loudly at first use
instead of surfacing later as an odd pool behavior. Each kind of pool declares its own settings on top of
these readers (``postgres.settings``, ``sqlite.pool``, ``http.manager``).

:class:`EnvironSignature` is the one place that reads CPython's raw environment dict: hot paths that must
obey an environment change at once (the default database URL, urllib's proxy settings) compare a cheap
signature instead of re-reading and re-parsing the variables on every call.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

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


def env_choice(
    name: str, default: str, choices: tuple[str, ...], *, environ: Mapping[str, str] | None = None
) -> str:
    """One of ``choices`` (case-insensitive) from ``name`` in the environment."""
    raw = _environ(environ).get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r} is not one of: {', '.join(choices)} (default {default})")
    return value


def check_minimum(name: str, value: _Number, minimum: _Number) -> _Number:
    """Reject values below ``minimum``, naming the setting; returns ``value`` unchanged otherwise."""
    if value < minimum:
        raise ConfigError(f"{name}={value!r} is below the minimum of {minimum}")
    return value


# -- change detection ------------------------------------------------------------------------------------
# ``os.environ.get`` goes Mapping.get -> __getitem__ -> encode the name -> decode the value, on every read.
# CPython's ``os.environ`` keeps its contents in ``_data``, a plain dict keyed by ``encodekey(name)`` and
# updated by every change made through os.environ (set, del, pop, clear, update; never replaced), so
# reading that dict sees exactly what ``get`` would see, undecoded (bytes on POSIX). Anything else standing
# in for os.environ (a replaced mapping, another implementation) takes the plain path.
_ENVIRON_AT_IMPORT = os.environ
_ENVIRON_DATA: Any = getattr(os.environ, "_data", None)
_ENCODE_NAME: Callable[[str], Any] | None = getattr(os.environ, "encodekey", None)
_DECODE_NAME: Callable[[Any], str] | None = getattr(os.environ, "decodekey", None)
# What cannot change after import, tested once (raw_environ sits on every pooled call's path).
_RAW_READABLE = type(_ENVIRON_DATA) is dict and _ENCODE_NAME is not None and _DECODE_NAME is not None


def raw_environ() -> dict[Any, Any] | None:
    """os.environ's own dict of raw names and values; None when reading it is not reading os.environ."""
    if _RAW_READABLE and os.environ is _ENVIRON_AT_IMPORT:
        return _ENVIRON_DATA  # type: ignore[no-any-return]
    return None


def decode_name(raw: Any) -> str:
    """A name from :func:`raw_environ` as ``os.environ`` shows it."""
    return _DECODE_NAME(raw) if _DECODE_NAME is not None else str(raw)


class EnvironSignature:
    """The raw values of a few environment variables: equal signatures, equal values.

    Comparing signatures tells a caller whether anything it derived from those variables is still valid,
    without decoding or parsing anything; the plain ``os.environ.get`` path is taken whenever
    :func:`raw_environ` cannot be trusted.
    """

    __slots__ = ("_raw_names", "names")

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        self._raw_names = tuple(map(_ENCODE_NAME, self.names)) if _ENCODE_NAME is not None else ()

    def __call__(self) -> tuple[Any, ...]:
        # Hot path (every pooled call without a URL): raw_environ()'s checks are inlined.
        if os.environ is _ENVIRON_AT_IMPORT and type(_ENVIRON_DATA) is dict and self._raw_names:
            return tuple(map(_ENVIRON_DATA.get, self._raw_names))
        return tuple([os.environ.get(name) for name in self.names])
