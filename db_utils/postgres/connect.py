"""``connect()``: the pooled drop-in for ``psycopg2.connect``, so a helper keeps its own recipe.

A legacy helper's ``psycopg2.connect(...)`` call carries the user's configuration (variable names,
timeouts, ``sslmode``, ``application_name``, dotenv files...). The codemod rewrites only the callee, to
this function; the arguments are still evaluated by the caller on every call. They are merged into a DSN
by ``psycopg2.extensions.make_dsn``, exactly as psycopg2 does (same merge, same errors), and each distinct
set of (DSN, ``connection_factory``, ``cursor_factory``, libpq ``PG*`` variables) gets its own pool,
created on first use with the ``DB_POOL_*`` settings. An environment change therefore lands in another
pool at once. Pools are bounded by ``DB_CONNECT_MAX_POOLS`` (see
:func:`db_utils.postgres.registry.parameters_pool`).

Not pooled, handed to ``psycopg2.connect`` unchanged: ``async``/``async_`` connections, replication
connections, a ``connection_factory`` that is not a connection class, an unhashable factory, and calls
made while every one of the ``DB_CONNECT_MAX_POOLS`` pools has connections checked out. While a test
replaces ``psycopg2.connect`` with a stand-in (a mock, a fake), each call goes to the stand-in with the
caller's own arguments, as the legacy call did (see :mod:`db_utils.stand_ins`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, NamedTuple

import psycopg2
import psycopg2.extensions as pgext
from psycopg2._psycopg import ReplicationConnection  # psycopg2.extras re-exports it privately
from sqlalchemy.engine import URL

from db_utils.config import EnvironSignature
from db_utils.postgres.driver import tracked_connection_class
from db_utils.postgres.lending import lend
from db_utils.postgres.registry import parameters_pool
from db_utils.postgres.settings import redact_url
from db_utils.stand_ins import DriverFunction, defined_in, drop_in

logger = logging.getLogger("db_utils.pool")

#: libpq's environment variables: a DSN leaves to them whatever it does not say, so they are part of the
#: pool key (https://www.postgresql.org/docs/current/libpq-envars.html).
_LIBPQ_ENVIRONMENT = EnvironSignature(
    (
        "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGPASSFILE",
        "PGCHANNELBINDING", "PGSERVICE", "PGSERVICEFILE", "PGOPTIONS", "PGAPPNAME", "PGSSLMODE",
        "PGREQUIRESSL", "PGSSLCOMPRESSION", "PGSSLCERT", "PGSSLKEY", "PGSSLCERTMODE", "PGSSLROOTCERT",
        "PGSSLCRL", "PGSSLCRLDIR", "PGSSLSNI", "PGREQUIREPEER", "PGSSLMINPROTOCOLVERSION",
        "PGSSLMAXPROTOCOLVERSION", "PGGSSENCMODE", "PGKRBSRVNAME", "PGGSSLIB", "PGGSSDELEGATION",
        "PGCONNECT_TIMEOUT", "PGCLIENTENCODING", "PGTARGETSESSIONATTRS", "PGLOADBALANCEHOSTS",
        "PGREQUIREAUTH", "PGDATESTYLE", "PGTZ", "PGGEQO", "PGSYSCONFDIR",
    )
)  # fmt: skip
_ASYNC = ("async", "async_")
_warned_unpooled = False
#: psycopg2's own ``connect``, told from a test's stand-in (see :mod:`db_utils.stand_ins`).
_DRIVER_CONNECT = DriverFunction(psycopg2.connect, defined_in("psycopg2/__init__.py", "connect"))


class ConnectParameters(NamedTuple):
    """One pool's key: everything that decides what ``psycopg2.connect`` would have returned."""

    dsn: str
    connection_factory: type | None
    cursor_factory: Any
    environment: tuple[Any, ...]

    def open(self, base: type) -> Any:
        """A new connection, as ``psycopg2.connect`` makes it, of a class combining the user's factory
        with ``base`` (the pool's tracking class for its ``DB_POOL_MODE``)."""
        connection = psycopg2.connect(
            self.dsn, connection_factory=tracked_connection_class(self.connection_factory, base)
        )
        if self.cursor_factory is not None:
            connection.cursor_factory = self.cursor_factory
        return connection

    def __repr__(self) -> str:  # the DSN may hold the password
        return f"<ConnectParameters {self.display()}>"

    def display(self) -> str:
        """The password-free name of the pool, for ``pool_status()``, logs and errors.

        The DSN as a URL, through the one redaction every pool name goes through
        (:func:`~db_utils.postgres.settings.redact_url`), then ``(psycopg2.connect ...)`` and the factories.
        """
        rest = {
            name: "***" if "password" in name else value for name, value in pgext.parse_dsn(self.dsn).items()
        }
        port = rest.pop("port", None) if rest.get("port", "").isdigit() else None
        url = URL.create(
            "postgresql",
            username=rest.pop("user", None),
            password=rest.pop("password", None),  # already "***": the password never enters the URL
            host=rest.pop("host", None),
            port=int(port) if port else None,
            database=rest.pop("dbname", None),
            query=rest,
        )
        factories = "".join(
            f", {label}={getattr(factory, '__name__', type(factory).__name__)}"
            for label, factory in (
                ("connection_factory", self.connection_factory),
                ("cursor_factory", self.cursor_factory),
            )
            if factory is not None
        )
        return f"{redact_url(url)} (psycopg2.connect{factories})"


def _pooled_connect(
    dsn: str | None = None, connection_factory: Any = None, cursor_factory: Any = None, **kwargs: Any
) -> Any:
    """``psycopg2.connect``, pooled: same signature, argument handling and errors (see module docs).

    Returns a :class:`~db_utils.postgres.proxy.PooledConnection` (``close()`` returns it to its pool),
    or, for what cannot be pooled, whatever ``psycopg2.connect`` returns.
    """
    if any(kwargs.get(name) for name in _ASYNC) or not _poolable_factory(connection_factory):
        return psycopg2.connect(dsn, connection_factory, cursor_factory, **kwargs)
    for name in _ASYNC:
        kwargs.pop(name, None)  # async=False: psycopg2's ordinary synchronous connection
    merged = pgext.make_dsn(dsn, **kwargs)
    if "replication" in merged and pgext.parse_dsn(merged).get("replication"):
        return psycopg2.connect(merged, connection_factory, cursor_factory)
    key = ConnectParameters(merged, connection_factory, cursor_factory, _LIBPQ_ENVIRONMENT())
    try:
        hash(key)
    except TypeError:  # e.g. a cursor_factory that is an unhashable callable object
        return psycopg2.connect(merged, connection_factory, cursor_factory)
    entry = parameters_pool(key, key.display, key.open)
    if entry is None:
        _warn_unpooled()
        return psycopg2.connect(merged, connection_factory, cursor_factory)
    engine, state = entry
    return lend(engine, state, sys._getframe(1))  # connect()'s frame: the borrower is found past it


connect = drop_in(_pooled_connect, psycopg2, "connect", _DRIVER_CONNECT)


def _poolable_factory(factory: Any) -> bool:
    if factory is None:
        return True
    return (
        isinstance(factory, type)
        and issubclass(factory, pgext.connection)
        and not issubclass(factory, ReplicationConnection)
    )


def _warn_unpooled() -> None:
    global _warned_unpooled  # noqa: PLW0603 - warn once per process, not per call
    if not _warned_unpooled:
        _warned_unpooled = True
        logger.warning(
            "db_utils.postgres.connect: DB_CONNECT_MAX_POOLS pools all have connections checked out; "
            "connections with new parameters are not pooled (raise DB_CONNECT_MAX_POOLS, or pass the "
            "parameters that vary per call some other way)"
        )
