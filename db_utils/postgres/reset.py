"""Reset a psycopg2 connection on its way back to the pool, or say why it must be discarded.

Legacy code got a brand-new connection per call; the next borrower of a pooled connection must not be
able to tell the difference. The reset therefore restores everything a borrower can change:

- server side: the open transaction (rolled back, so no locks survive) and, when the borrower's
  statements touched session state, ``DISCARD ALL`` (see :mod:`db_utils.postgres.statements`);
- client side (psycopg2 keeps these in the connection object, so restoring them costs no round trip):
  ``autocommit``, ``set_session`` settings (isolation level, read-only, deferrable), ``cursor_factory``
  (to the one given to ``db_utils.postgres.connect``, if any), the ``notices``/``notifies`` lists, and
  attributes a borrower added to the connection object (``LoggingConnection.initialize()``'s logger: a
  fresh connection has none, so the next borrower must initialize it again, as before pooling).

Typecasters registered on the connection are undone too (its typecaster dicts get their connect-time
contents back), so a helper that registers one on every connect keeps reusing its connections.
What cannot be restored reliably leads to a discard (the caller closes the connection): a changed client
encoding, two-phase/async states, ``LOAD``, a broken link.
The happy path (idle transaction, nothing dirty) is a handful of attribute reads and no I/O.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions as pgext

from db_utils.postgres.driver import plain_cursor
from db_utils.postgres.statements import CLEAN, SESSION_STATE, UNRESETTABLE

_IDLE = pgext.TRANSACTION_STATUS_IDLE
_IN_TRANSACTION = (pgext.TRANSACTION_STATUS_INTRANS, pgext.TRANSACTION_STATUS_INERROR)
_USABLE_STATUS = (pgext.STATUS_READY, pgext.STATUS_BEGIN)


@dataclass(frozen=True)
class Baseline:
    """What a connection looked like when the pool opened it: the state a reset must come back to."""

    encoding: str
    #: ``string_types``/``binary_types`` as (oid, typecaster) pairs: compared by identity on return (see
    #: :func:`_same_typecasters`) and put back when they differ.
    string_types: tuple[tuple[Any, Any], ...]
    binary_types: tuple[tuple[Any, Any], ...]
    #: DateStyle as psycopg2 left it after connecting: on a non-ISO server psycopg2 runs
    #: ``SET DATESTYLE TO 'ISO'`` (it parses ISO dates only), a SET that DISCARD ALL would undo.
    datestyle: str | None
    cursor_factory: Any
    #: Names in the connection object's ``__dict__``: any other was added by a borrower.
    attributes: frozenset[str]
    #: What :data:`_STATE` reads from a connection that needs no reset at all (see :func:`is_pristine`).
    pristine: tuple[Any, ...]
    #: What :data:`UNEXPOSED_STATE` reads from such a connection when it needs no reset.
    unexposed_pristine: tuple[Any, ...]
    #: Whether the connect-time typecaster dicts were empty (the everyday case, see
    #: ``driver.restore_plain_psycopg2_typecasters``): then ``pristine``'s comparison covers them too.
    no_typecasters: bool

    @classmethod
    def of(cls, connection: Any) -> Baseline:
        attributes = dict(vars(connection), session_effect=CLEAN)
        return cls(
            connection.encoding,
            tuple(connection.string_types.items()),
            tuple(connection.binary_types.items()),
            connection.info.parameter_status("DateStyle"),
            connection.cursor_factory,
            frozenset(vars(connection)),
            # closed, status, encoding, autocommit, isolation level, read-only, deferrable, cursor factory,
            # empty notices/notifies lists, and the instance attributes with their connect-time values
            # (session_effect CLEAN among them).
            (
                0,
                pgext.STATUS_READY,
                connection.encoding,
                False,
                None,
                None,
                None,
                connection.cursor_factory,
                [],
                list,
                [],
                list,
                attributes,
                {},
                {},
            ),
            (0, pgext.STATUS_READY, [], [], attributes),
            not connection.string_types and not connection.binary_types,
        )


# Everything the reset restores that psycopg2 exposes as attributes, read in one C call.
_STATE = operator.attrgetter(
    "closed",
    "status",
    "encoding",
    "autocommit",
    "isolation_level",
    "readonly",
    "deferrable",
    "cursor_factory",
    "notices",
    "notices.__class__",
    "notifies",
    "notifies.__class__",
    "__dict__",
    # Equal to the empty dicts of ``Baseline.pristine`` exactly when empty. Non-empty ones compare their
    # typecasters by OIDs, not identity: is_pristine then compares them itself.
    "string_types",
    "binary_types",
)


def is_pristine(connection: Any, baseline: Baseline) -> bool:
    """True if :func:`reset_connection` would have nothing to do: the everyday return of a connection
    whose work was committed (or never began), found without any Python-level reads.

    psycopg2's own status is READY (no transaction it began) and libpq reports the server idle (a
    transaction begun with SQL text in autocommit mode shows only there); the client settings, the
    notices and notifies lists, the instance attributes (and with them ``session_effect``) are as at
    connect time, and so are the typecaster dicts (compared by identity, see :func:`_restore_typecasters`;
    empty ones, the everyday case, in the same single comparison as the rest).
    """
    # The transaction first: a return with work uncommitted (legacy code's close()) fails here, cheaply.
    if connection.get_transaction_status() != _IDLE:
        return False
    if baseline.no_typecasters:
        return bool(_STATE(connection) == baseline.pristine)
    # Typecasters at connect time (a user's connection_factory registered some): all but the last two
    # values compared at once, the typecasters by identity.
    return bool(
        _STATE(connection)[:-2] == baseline.pristine[:-2]
        and _same_typecasters(connection.string_types, baseline.string_types)
        and _same_typecasters(connection.binary_types, baseline.binary_types)
    )


#: What a connection no borrower's code ever reached can have changed (see
#: ``proxy.PooledConnection.expose``): a break, its status, the notices and notifies the server sent,
#: and ``session_effect`` (its cursors' statements), read in one C call. Its client settings (autocommit,
#: isolation level, read-only, deferrable, cursor factory, encoding, typecasters, the notices/notifies
#: containers) can only be changed through the real object. ``Loan.give_back`` compares this with
#: :attr:`Baseline.unexposed_pristine` after checking that the transaction is idle.
UNEXPOSED_STATE = operator.attrgetter("closed", "status", "notices", "notifies", "__dict__")


def _same_typecasters(current: dict[Any, Any], items: tuple[tuple[Any, Any], ...]) -> bool:
    """The same typecasters under the same OIDs as ``items``, compared by identity (see
    :func:`_restore_typecasters`): as many entries, each of ``items`` present with the very same object."""
    if len(current) != len(items):
        return False
    get = current.get
    return all(get(oid) is caster for oid, caster in items)


def reset_connection(connection: Any, baseline: Baseline) -> str | None:
    """Reset ``connection`` for the next borrower. Returns None if it is reusable, else why not."""
    try:
        effect = connection.session_effect
        reason = _unresettable_reason(connection, effect, baseline)
        if reason is not None:
            return reason
        if connection.get_transaction_status() != _IDLE:
            reason = _end_transaction(connection)
            if reason is not None:
                return reason
        if effect == SESSION_STATE:
            _discard_session_state(connection, baseline)
        _restore_typecasters(connection.string_types, baseline.string_types)
        _restore_typecasters(connection.binary_types, baseline.binary_types)
        _restore_client_settings(connection, baseline)
    except Exception as exc:  # any failure here means the connection's state is unknown
        return f"reset failed ({type(exc).__name__})"
    return None


def _unresettable_reason(connection: Any, effect: int, baseline: Baseline) -> str | None:
    if connection.closed:
        return "connection closed or broken"
    if effect == UNRESETTABLE:
        return "session state that DISCARD ALL cannot undo (LOAD, client encoding, a custom variable)"
    if connection.status not in _USABLE_STATUS:
        return "two-phase or asynchronous state"
    if connection.encoding != baseline.encoding:
        return "client encoding changed"
    return None


def _restore_typecasters(current: dict[Any, Any], baseline: tuple[tuple[Any, Any], ...]) -> None:
    """Typecasters registered on the connection (``register_type(caster, conn)``, ``register_uuid``,
    ``register_default_jsonb``, ``register_hstore``...) live in its ``string_types``/``binary_types``
    dicts, which psycopg2 consults on every fetch: putting the connect-time contents back undoes them.

    Compared by identity: psycopg2 typecasters compare equal when their OIDs do, so ``!=`` would miss
    ``register_uuid(None, conn)`` replacing the pool's own UUID-as-text caster for the same OIDs.
    """
    if not _same_typecasters(current, baseline):
        current.clear()
        current.update(baseline)


def _end_transaction(connection: Any) -> str | None:
    """Roll back whatever is open; psycopg2's rollback() is a no-op in autocommit mode, hence the SQL."""
    status = connection.get_transaction_status()
    if status not in _IN_TRANSACTION:
        return "connection busy or in an unknown state"
    if connection.autocommit:
        # A manual BEGIN in autocommit mode: psycopg2 does not know about it, the server does.
        with plain_cursor(connection) as cursor:
            cursor.execute("ROLLBACK")
    else:
        connection.rollback()
    if connection.get_transaction_status() != _IDLE:
        return "transaction could not be rolled back"
    return None


def _discard_session_state(connection: Any, baseline: Baseline) -> None:
    """``DISCARD ALL`` must run outside a transaction block, hence the autocommit switch.

    It also resets the one SET psycopg2 may have issued itself when connecting (DateStyle), so that is
    put back. The check is client-side: the server reports DateStyle changes (it is a GUC_REPORT
    setting), so psycopg2's ``parameter_status`` is current without a round trip.
    """
    connection.autocommit = True
    with plain_cursor(connection) as cursor:
        cursor.execute("DISCARD ALL")
        if baseline.datestyle and connection.info.parameter_status("DateStyle") != baseline.datestyle:
            cursor.execute("SET DateStyle TO %s", (baseline.datestyle,))
    connection.session_effect = CLEAN


def _restore_client_settings(connection: Any, baseline: Baseline) -> None:
    if connection.autocommit:
        connection.autocommit = False
    if (
        connection.isolation_level is not None
        or connection.readonly is not None
        or connection.deferrable is not None
    ):
        connection.set_session(isolation_level="DEFAULT", readonly="DEFAULT", deferrable="DEFAULT")
    if connection.cursor_factory is not baseline.cursor_factory:
        connection.cursor_factory = baseline.cursor_factory
    if type(connection.notices) is not list or connection.notices:
        connection.notices = []
    if type(connection.notifies) is not list or connection.notifies:
        connection.notifies = []
    attributes = vars(connection)
    if len(attributes) != len(baseline.attributes):
        for name in attributes.keys() - baseline.attributes:
            del attributes[name]
