"""Connections behind a transaction-pooling PgBouncer (``DB_POOL_MODE=pgbouncer``).

In transaction pooling a server connection is ours only from BEGIN to COMMIT; then PgBouncer hands it to
another client without resetting it, and a ``DISCARD ALL`` sent after the COMMIT runs on whichever server
connection PgBouncer picks for it. So the local pool's reset on return (see
:mod:`db_utils.postgres.reset`) comes too late. Here session state never outlives the transaction that
made it: the statement classifier (:mod:`db_utils.postgres.statements`) marks the transaction dirty, and
before that transaction ends, in the same transaction (so on the same server connection), the state is
undone:

- ``commit()``: ``CLOSE ALL; RESET ROLE; RESET ALL; DEALLOCATE ALL; pg_advisory_unlock_all(); DISCARD
  TEMP`` (everything ``DISCARD ALL`` does that may run inside a transaction block; the DateStyle psycopg2
  set when connecting is put back), then COMMIT;
- ``rollback()`` (also the pool's rollback on return): a rollback already undoes SET, temp tables and
  cursors of its transaction, but not advisory locks or prepared statements, so those are released in
  the same message as the ROLLBACK, where no other client can come between.

What cannot be undone that way is refused before it reaches the server, with
:class:`SessionStateNotSupported` naming the reason: session state in autocommit mode (each statement is
its own transaction, so there is no "before COMMIT"), ``set_session`` characteristics in autocommit mode
(psycopg2 sends them as session defaults), ``LISTEN`` (notifications arrive between transactions, when
the server connection belongs to someone else), ``WITH HOLD`` cursors (they exist to outlive the
transaction), ``SET SESSION AUTHORIZATION`` and what even ``DISCARD ALL`` cannot undo (``LOAD``, a
client encoding changed in SQL).
"""

from __future__ import annotations

import re
import threading
from typing import Any

import psycopg2
import psycopg2.extensions as pgext

from db_utils.postgres.driver import (
    PLAIN_CURSOR_CLASS,
    TrackedConnection,
    plain_cursor,
    real_connection_of,
    tracked_cursor_class,
)
from db_utils.postgres.statements import CLEAN, UNRESETTABLE, classify_query, leading_keyword

#: DISCARD ALL minus what may not run in a transaction block (SET SESSION AUTHORIZATION is refused
#: instead), plus RESET ROLE (RESET ALL leaves the role alone). Runs in the caller's transaction.
UNDO_BEFORE_COMMIT = (
    "CLOSE ALL; RESET ROLE; RESET ALL; DEALLOCATE ALL; SELECT pg_advisory_unlock_all(); DISCARD TEMP"
)
#: What survives a ROLLBACK, released in the same message. The trailing BEGIN keeps the server in the
#: transaction psycopg2 believes is open, so its own ROLLBACK that follows ends it without a warning.
UNDO_WITH_ROLLBACK = "ROLLBACK; SELECT pg_advisory_unlock_all(); DEALLOCATE ALL; BEGIN"

_IN_TRANSACTION = pgext.TRANSACTION_STATUS_INTRANS
_IN_ERROR = pgext.TRANSACTION_STATUS_INERROR
# Statements that only remove session state: harmless anywhere, so never refused.
_UNDOING = frozenset({"reset", "discard", "deallocate"})
_WITH_HOLD = re.compile(r"\bwith\s+hold\b", re.IGNORECASE)
_SESSION_AUTHORIZATION = re.compile(r"\bsession\s+authorization\b", re.IGNORECASE)

AUTOCOMMIT = (
    "session state (SET, temp tables, advisory locks, PREPARE...) in autocommit mode: behind PgBouncer's "
    "transaction pooling each statement is a transaction of its own, so the state would stay on a server "
    "connection other clients get next. Run it inside a transaction (autocommit off), where it lasts until "
    "the transaction ends, or use SET LOCAL"
)
CHARACTERISTICS = (
    "set_session()/isolation_level/readonly/deferrable in autocommit mode: psycopg2 sends them as session "
    "defaults (SET default_transaction_...), which behind PgBouncer's transaction pooling stay on a server "
    "connection other clients get next. Set them with autocommit off (psycopg2 then sends them with each "
    "BEGIN)"
)
LISTEN = (
    "LISTEN behind PgBouncer's transaction pooling: notifications arrive between transactions, when the "
    "server connection belongs to another client. Listen on a connection straight to PostgreSQL (a pool "
    "with DB_POOL_MODE=local and a URL that bypasses PgBouncer)"
)
WITH_HOLD = (
    "a WITH HOLD cursor behind PgBouncer's transaction pooling: it exists to outlive its transaction, "
    "and after COMMIT its server connection belongs to another client. Fetch within the transaction"
)
SESSION_AUTHORIZATION = (
    "SET SESSION AUTHORIZATION behind PgBouncer's transaction pooling: it cannot be undone inside a "
    "transaction. Connect as that user instead, or use SET LOCAL ROLE"
)
UNRESETTABLE_STATE = (
    "LOAD or a client encoding changed in SQL: neither can be undone on a server connection PgBouncer "
    "shares. Use connection.set_client_encoding() (PgBouncer tracks the encoding per client); LOAD libraries "
    "through the server's configuration"
)


# -- what pool_status() says about a pool's mode (one home for the behaviour each mode changes) ----------

#: What ``DB_POOL_MODE=pgbouncer`` does differently, as ``pool_status()`` reports it.
TRANSACTION_POOLING = {
    "session_state": "undone inside the caller's transaction, before COMMIT (" + UNDO_BEFORE_COMMIT + ")",
    "prepared_statements": "deallocated before COMMIT, and in the same message as a ROLLBACK",
    "reset_on_return": "rollback only: session state never outlives its transaction",
    "refused": "LISTEN, WITH HOLD cursors, SET SESSION AUTHORIZATION, LOAD, client encoding set in SQL, "
    "session state and set_session() in autocommit mode",
}
#: ``DB_POOL_MODE=local``: a session is the pool's own (PostgreSQL itself, or PgBouncer in session pooling).
SESSION_POOLING = {
    "session_state": "kept until the connection is returned to the pool",
    "prepared_statements": "kept until the connection is returned to the pool",
    "reset_on_return": "rollback; DISCARD ALL when the borrower changed session state",
    "refused": "nothing",
}


def describe_mode(mode: str, pooler: bool | None) -> dict[str, Any]:
    """The ``pgbouncer`` entry of a pool's figures.

    ``pooler``: whether the pool's first connection found a pooler in front of PostgreSQL (None before
    it). ``pooling`` is the PgBouncer pool mode the shim works with: ``transaction`` in
    ``DB_POOL_MODE=pgbouncer``; ``session`` for ``local`` behind a pooler (the mode ``local`` is safe
    with); None when the pool talks to PostgreSQL itself.
    """
    if mode == "pgbouncer":
        pooling: str | None = "transaction"
    else:
        pooling = "session" if pooler else None
    changes = TRANSACTION_POOLING if mode == "pgbouncer" else SESSION_POOLING
    return {"detected": pooler, "pooling": pooling, "db_pool_mode": mode, **changes}


class SessionStateNotSupported(psycopg2.NotSupportedError):  # type: ignore[misc]
    """Session state a transaction-pooling PgBouncer would leak to other clients; refused, never sent."""

    def __init__(self, what: str) -> None:
        super().__init__(f"DB_POOL_MODE=pgbouncer refuses {what}")


def refusal(statement: str, effect: int, autocommit: bool) -> str | None:
    """Why a statement the classifier flagged must not reach a shared server connection, or None."""
    parts = [part for part in statement.split(";") if part.strip()] if ";" in statement else [statement]
    for part in parts:
        keyword = leading_keyword(part)
        if keyword == "listen":
            return LISTEN
        if keyword == "declare" and _WITH_HOLD.search(part):
            return WITH_HOLD
        if keyword == "set" and _SESSION_AUTHORIZATION.search(part):
            return SESSION_AUTHORIZATION
    if effect == UNRESETTABLE:
        return UNRESETTABLE_STATE
    if autocommit and not all(leading_keyword(part) in _UNDOING for part in parts):
        return AUTOCOMMIT
    return None


def _statement_text(query: Any, connection: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, (bytes, bytearray, memoryview)):
        return bytes(query).decode("latin-1")
    return str(query.as_string(connection))


class _GuardedCursorMixin:
    """Refuses a flagged statement before it is sent (the tracking cursor underneath marks the rest)."""

    def execute(self, query: Any, vars: Any = None) -> Any:
        real_connection_of(self).check_statement(query)
        return super().execute(query, vars)  # type: ignore[misc]

    def executemany(self, query: Any, vars_list: Any) -> Any:
        real_connection_of(self).check_statement(query)
        return super().executemany(query, vars_list)  # type: ignore[misc]


_guarded_classes: dict[type, type] = {}
_guarded_classes_lock = threading.Lock()  # guards building an entry of _guarded_classes


def guarded_cursor_class(factory: type) -> type:
    """The guarding (and tracking) subclass of a cursor class, built once per class and cached."""
    guarded = _guarded_classes.get(factory)
    if guarded is None:
        with _guarded_classes_lock:
            guarded = _guarded_classes.get(factory)
            if guarded is None:
                bases = (_GuardedCursorMixin, tracked_cursor_class(factory))
                guarded = type(f"Guarded{factory.__name__}", bases, {})
                _guarded_classes[factory] = guarded
    return guarded


_GUARDED_CURSOR = guarded_cursor_class(pgext.cursor)
_CHARACTERISTICS = ("isolation_level", "readonly", "deferrable")


def _sets_session_defaults(autocommit: bool, characteristics: dict[str, Any]) -> bool:
    """Whether psycopg2 would send ``SET default_transaction_*``: autocommit with any non-default value."""
    return autocommit and any(
        value is not None and not (isinstance(value, str) and value.upper() == "DEFAULT")
        for value in characteristics.values()
    )


class TransactionPooledConnection(TrackedConnection):
    """A tracked psycopg2 connection whose session state ends with its transaction; see module docs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: DateStyle as psycopg2 left it after connecting: on a non-ISO server psycopg2 runs
        #: ``SET DATESTYLE TO 'ISO'`` (it parses ISO dates only), a SET that RESET ALL would undo.
        self.connected_datestyle = self.info.parameter_status("DateStyle")

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("withhold", args[3] if len(args) > 3 else False):
            raise SessionStateNotSupported(WITH_HOLD)
        if not args and not kwargs and self.cursor_factory is None:
            return pgext.connection.cursor(self, cursor_factory=_GUARDED_CURSOR)
        factory = kwargs.get("cursor_factory") or self.cursor_factory or pgext.cursor
        if isinstance(factory, type) and issubclass(factory, pgext.cursor):
            kwargs["cursor_factory"] = guarded_cursor_class(factory)
            return pgext.connection.cursor(self, *args, **kwargs)
        return super().cursor(*args, **kwargs)  # untracked: marked dirty, undone at the end

    def check_statement(self, query: Any) -> None:
        """Raise :class:`SessionStateNotSupported` for a statement that must not be sent."""
        effect = classify_query(query, self)
        if effect == CLEAN:
            return
        try:
            text = _statement_text(query, self)
        except Exception:  # the driver will report the real problem when it executes the query
            return
        reason = refusal(text, effect, self.autocommit)
        if reason is not None:
            raise SessionStateNotSupported(reason)

    def commit(self) -> None:
        if self.session_effect != CLEAN and not self.autocommit:
            self._undo_session_state()
        super().commit()

    def rollback(self) -> None:
        if self.session_effect != CLEAN and not self.autocommit:
            self._undo_session_state()
        super().rollback()

    def _undo_session_state(self) -> None:
        """Undo what the open transaction left in the session, on its own server connection."""
        status = self.info.transaction_status
        if status == _IN_TRANSACTION:
            with plain_cursor(self) as cursor:
                cursor.execute(UNDO_BEFORE_COMMIT)
                # The server reports DateStyle changes (GUC_REPORT): checking costs no round trip.
                datestyle = self.connected_datestyle
                if datestyle and self.info.parameter_status("DateStyle") != datestyle:
                    cursor.execute("SET DateStyle TO %s", (datestyle,))
        elif status == _IN_ERROR:
            with plain_cursor(self) as cursor:
                cursor.execute(UNDO_WITH_ROLLBACK)
        self.session_effect = CLEAN

    # -- psycopg2 sends session characteristics as SET in autocommit mode: refuse those ---------------

    def set_session(
        self,
        isolation_level: Any = None,
        readonly: Any = None,
        deferrable: Any = None,
        autocommit: Any = None,
    ) -> None:
        will_autocommit = self.autocommit if autocommit is None else bool(autocommit)
        given = {"isolation_level": isolation_level, "readonly": readonly, "deferrable": deferrable}
        resulting = {name: getattr(self, name) if given[name] is None else given[name] for name in given}
        if _sets_session_defaults(will_autocommit, resulting):
            raise SessionStateNotSupported(CHARACTERISTICS)
        super().set_session(isolation_level, readonly, deferrable, autocommit)

    def set_isolation_level(self, level: int | None) -> None:
        if level == pgext.ISOLATION_LEVEL_AUTOCOMMIT and _sets_session_defaults(
            True, {"readonly": self.readonly, "deferrable": self.deferrable}
        ):
            raise SessionStateNotSupported(CHARACTERISTICS)
        super().set_isolation_level(level)


def _guarded_characteristic(name: str) -> property:
    """``autocommit``/``isolation_level``/``readonly``/``deferrable`` as properties that refuse a change
    leading psycopg2 to send session defaults (it does so in autocommit mode)."""
    base = getattr(pgext.connection, name)

    def get(connection: TransactionPooledConnection) -> Any:
        return base.__get__(connection)

    def set_(connection: TransactionPooledConnection, value: Any) -> None:
        resulting = {key: getattr(connection, key) for key in _CHARACTERISTICS if key != name}
        if name == "autocommit":
            will_autocommit = bool(value)
        else:
            will_autocommit, resulting[name] = connection.autocommit, value
        if _sets_session_defaults(will_autocommit, resulting):
            raise SessionStateNotSupported(CHARACTERISTICS)
        base.__set__(connection, value)

    return property(get, set_, doc=base.__doc__)


for _name in ("autocommit", *_CHARACTERISTICS):
    setattr(TransactionPooledConnection, _name, _guarded_characteristic(_name))

PLAIN_CURSOR_CLASS[TransactionPooledConnection] = _GUARDED_CURSOR
