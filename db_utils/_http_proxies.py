"""``urllib.request.getproxies()`` for every call, without re-reading the whole environment every time.

Why: urllib reads the proxy settings from the environment on every call, and so must the pool (a proxy
that applies sends the call to urllib, see ``_http_route``). On POSIX, ``getproxies()`` walks every
environment variable twice, decoding and lower-casing each name: ~80 us per call on the benchmark machine,
a quarter of a whole pooled request to a fast local server (bench/README.md, section HTTP).

Its result depends on nothing but the environment's *names* (which end in ``_proxy``, in any case, and
whether ``REQUEST_METHOD`` is set) and the *values* of the ``*_proxy`` variables. So the result is kept
with a signature of exactly that: the set of variable names and the raw values of the proxy variables.
Checking the signature compares two sets and reads a handful of values in C, about 1 us; any change to a
name or to a proxy value (``os.environ[...] = ...``, ``del``, ``monkeypatch.setenv``...) changes it, and
the next call reads the environment again through urllib's own function. Exactness therefore rests on
urllib's function, never on a re-implementation of it.

The shortcut reads CPython's ``os.environ._data`` (the dict every change made through ``os.environ``
updates, as db_utils.pool does for ``POSTGRES_*``). It is taken only while that holds and while
``urllib.request.getproxies`` is urllib's own environment reader (Linux and other POSIX but macOS); a
replaced ``os.environ``, a monkeypatched ``getproxies`` or another platform's reader (macOS system
settings, the Windows registry, which no signature can watch) gets the plain call every time.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable
from typing import Any, NamedTuple

_ENVIRON = os.environ
_DATA: Any = getattr(os.environ, "_data", None)
_DECODE_NAME: Callable[[Any], str] | None = getattr(os.environ, "decodekey", None)
# urllib's POSIX reader, as imported: ``urllib.request.getproxies`` is this very function on Linux.
_ENVIRONMENT_READER = urllib.request.getproxies_environment


class _Cached(NamedTuple):
    names: frozenset[Any]  # every environment name, raw (bytes on POSIX)
    proxy_names: tuple[Any, ...]  # the raw names urllib reads a proxy from
    proxy_values: tuple[Any, ...]  # their raw values, in the same order
    proxies: dict[str, str]  # what urllib's reader returned for exactly that environment


# One immutable tuple, replaced wholesale: reading and rebinding a module global is atomic under the GIL,
# so threads need no lock (at worst two threads both refresh it after a change, with the same result).
_cached: _Cached | None = None


def current_proxies() -> dict[str, str]:
    """What ``urllib.request.getproxies()`` returns now (a new dict each call, as urllib's is)."""
    if not _shortcut_applies():
        return urllib.request.getproxies()
    cached = _cached
    if (
        cached is not None
        and _DATA.keys() == cached.names
        and tuple(map(_DATA.get, cached.proxy_names)) == cached.proxy_values
    ):
        return dict(cached.proxies)
    return _refresh()


def _shortcut_applies() -> bool:
    return (
        urllib.request.getproxies is _ENVIRONMENT_READER
        and os.environ is _ENVIRON
        and type(_DATA) is dict
        and _DECODE_NAME is not None
    )


def _refresh() -> dict[str, str]:
    global _cached  # noqa: PLW0603 - the one cache slot, replaced atomically (see above)
    before = _signature()
    proxies = _ENVIRONMENT_READER()
    # Another thread may change the environment while urllib reads it; then the answer belongs to no
    # single signature, so it is returned (as urllib's own would be) but not kept.
    if _signature() == before:
        names, proxy_names, proxy_values = before
        _cached = _Cached(names, proxy_names, proxy_values, dict(proxies))
    return proxies


def _signature() -> tuple[frozenset[Any], tuple[Any, ...], tuple[Any, ...]]:
    names = frozenset(_DATA)
    proxy_names = tuple(name for name in names if _is_proxy_name(name))
    return names, proxy_names, tuple(map(_DATA.get, proxy_names))


def _is_proxy_name(raw: Any) -> bool:
    """True for every name urllib's reader takes a proxy from (either of its two passes)."""
    name = _DECODE_NAME(raw) if _DECODE_NAME is not None else str(raw)  # None: _shortcut_applies is False
    return name.lower()[-6:] == "_proxy" or name[-6:] == "_proxy"
