"""``connect()``: a pooled drop-in for ``sqlite3.connect`` with the same signature and semantics.

Migrated code replaces ``sqlite3.connect(...)`` with ``db_utils.sqlite.connect(...)`` and nothing else.
File databases are served from a per-database pool of raw connections behind a proxy that keeps every
sqlite3 behavior legacy code relies on (``close()``, ``with conn:``, ``check_same_thread``, cursors, the
exceptions and their messages); see migration_guide/sqlite.md for the exact contract and the differences.

Not pooled, handed to ``sqlite3.connect`` unchanged: ``:memory:``, ``""`` (temporary database), memory
URIs (``file::memory:``, ``mode=memory``), custom ``vfs=`` URIs, a non-default ``factory=``, and any
argument poolshift cannot classify (sqlite3 then raises its own error for it). While a test replaces
``sqlite3.connect`` with a stand-in (a mock, a fake), each call goes to the stand-in with the caller's own
arguments, as the legacy call did (see :mod:`db_utils.stand_ins`).

The pool is a lean deque rather than SQLAlchemy's QueuePool; :mod:`db_utils.sqlite.pool` explains why,
and bench/README.md holds the figures.
"""

from __future__ import annotations

import _sqlite3
import sqlite3
import sys
from typing import Any, cast

from db_utils.sqlite import registry
from db_utils.sqlite.pool import ConnectOptions
from db_utils.sqlite.proxy import lend
from db_utils.sqlite.target import resolve_target
from db_utils.stand_ins import DriverFunction, drop_in

#: sqlite3's own ``connect``, told from a test's stand-in (see :mod:`db_utils.stand_ins`): ``_sqlite3``'s,
#: which ``sqlite3`` re-exports, and which a test that patches ``sqlite3.connect`` leaves alone.
_DRIVER_CONNECT = DriverFunction(_sqlite3.connect, lambda candidate: candidate is _sqlite3.connect)


def _connect(arguments: tuple[Any, ...], check_same_thread: Any, factory: Any) -> sqlite3.Connection:
    """``arguments``: (database, timeout, detect_types, isolation_level, cached_statements, uri, extra)."""
    if factory is sqlite3.Connection:
        pool = registry.pool_for_arguments(arguments)
        if pool is not None:  # the hot path: these arguments were seen before
            # Typed as sqlite3.Connection so migrated code type-checks unchanged; at runtime it is the proxy.
            return lend(pool, pool.checkout(), check_same_thread)  # type: ignore[return-value]
    database, timeout, detect_types, isolation_level, cached_statements, uri, extra = arguments
    options = ConnectOptions(timeout, detect_types, isolation_level, cached_statements, uri, extra)
    target = resolve_target(database, uri) if factory is sqlite3.Connection else None
    if target is not None:
        try:
            hash(options)  # an unhashable argument is invalid for sqlite3 too: let it say so
        except TypeError:
            target = None
    if target is None:
        plain = sqlite3.connect(
            database,
            timeout=timeout,
            detect_types=detect_types,
            isolation_level=isolation_level,
            check_same_thread=check_same_thread,
            factory=factory,
            cached_statements=cached_statements,
            uri=uri,
            **dict(extra),
        )
        return cast(sqlite3.Connection, plain)
    pool, raw = registry.borrow(target, options, arguments)
    return lend(pool, raw, check_same_thread)  # type: ignore[return-value]


# The signature is sqlite3.connect's, positional parameters included: that is the drop-in contract.
if sys.version_info >= (3, 12):

    def _pooled_connect(  # noqa: PLR0917
        database: Any,
        timeout: float = 5.0,
        detect_types: int = 0,
        isolation_level: str | None = "",
        check_same_thread: bool = True,
        factory: Any = sqlite3.Connection,
        cached_statements: int = 128,
        uri: bool = False,
        *,
        autocommit: Any = sqlite3.LEGACY_TRANSACTION_CONTROL,
    ) -> sqlite3.Connection:
        """Open a connection to ``database`` like ``sqlite3.connect``, reusing pooled file connections."""
        extra = (("autocommit", autocommit),)
        arguments = (database, timeout, detect_types, isolation_level, cached_statements, uri, extra)
        return _connect(arguments, check_same_thread, factory)

else:

    def _pooled_connect(  # noqa: PLR0917
        database: Any,
        timeout: float = 5.0,
        detect_types: int = 0,
        isolation_level: str | None = "",
        check_same_thread: bool = True,
        factory: Any = sqlite3.Connection,
        cached_statements: int = 128,
        uri: bool = False,
    ) -> sqlite3.Connection:
        """Open a connection to ``database`` like ``sqlite3.connect``, reusing pooled file connections."""
        arguments = (database, timeout, detect_types, isolation_level, cached_statements, uri, ())
        return _connect(arguments, check_same_thread, factory)


connect = drop_in(_pooled_connect, sqlite3, "connect", _DRIVER_CONNECT)
