"""Per-connection PRAGMAs the pool reads back and restores, so a helper that sets them keeps its pool.

Legacy helpers often run ``PRAGMA foreign_keys = ON`` (or ``busy_timeout``, ``synchronous``...) on every
new connection. Discarding every connection that did so would make pooling useless for them, so for the
pragmas named here the pool instead remembers, per raw connection, the value it had before a borrower
first changed it (the value a fresh ``sqlite3.connect`` with the same arguments gives), and on return
writes that value back. A pragma set, as a plain literal, to the value it already has costs nothing on
return: the literal is parsed once per SQL string (cached with the rest of the statement's analysis) and
compared with the noted value; only if every write of that pragma during the lease set the noted value
is it left alone (a write that SQLite ignored, e.g. ``foreign_keys`` inside a transaction, can then only
have left the noted value in place). Anything not listed here (``locking_mode``, ``writable_schema``,
process-wide or deprecated pragmas) still makes the connection dirty: closed on return, not reused.

``journal_mode`` is not restored either: switching to or from WAL changes the database file for every
connection, so no write on return could undo it. But setting it to the mode it already has changes
nothing, and a helper that runs ``PRAGMA journal_mode = WAL`` on every connection of a database already
in WAL must keep its pool. That one has no noted value to compare with (the mode is the file's, and
another process may change it), so the proxy reads it with :func:`journal_mode` right before such a
statement runs, and the connection is dirty only when the statement sets another mode.

``case_sensitive_like`` has no getter. Rather than trusting the value last written (which SQLite may
have parsed differently, or ignored), its state is read back through its effect: ``'a' LIKE 'A'`` is
true exactly when LIKE is case-insensitive. That holds as long as nobody replaced ``like()``, and doing
so (``create_function``, an extension) makes the connection dirty anyway.
"""

from __future__ import annotations

import sqlite3

#: On/off pragmas: they read back as 0 or 1 (see literal_value for what SQLite accepts as a value).
FLAGS = frozenset(
    {
        "automatic_index",
        "case_sensitive_like",
        "cell_size_check",
        "defer_foreign_keys",
        "foreign_keys",
        "ignore_check_constraints",
        "legacy_alter_table",
        "query_only",
        "recursive_triggers",
        "reverse_unordered_selects",
        "trusted_schema",
    }
)
#: Every pragma the pool restores. Its value belongs to the connection and reads back as one integer
#: (``PRAGMA name``; ``case_sensitive_like`` through LIKE). Per-schema ones (cache_size, synchronous...)
#: are only handled for ``main`` (see statements.py).
RESTORABLE = FLAGS | {
    "analysis_limit",
    "busy_timeout",
    "cache_size",
    "journal_size_limit",
    "max_page_count",
    "mmap_size",
    "secure_delete",
    "synchronous",
    "temp_store",
    "threads",
    "wal_autocheckpoint",
}
#: Write-only: read back through its effect on LIKE (see the module docstring).
CASE_SENSITIVE_LIKE = "case_sensitive_like"
#: The names ``PRAGMA journal_mode`` reads back (lower case), which are also the modes it can set.
JOURNAL_MODES = frozenset({"delete", "truncate", "persist", "memory", "wal", "off"})
_TRUE, _FALSE = frozenset({"ON", "YES", "TRUE", "1"}), frozenset({"OFF", "NO", "FALSE", "0"})


def literal_value(name: str, value: list[str]) -> int | None:
    """The value a ``PRAGMA name = <value tokens>`` stores, when it is a plain literal; None otherwise.

    Only forms whose meaning is certain are recognised: a (signed) integer for a numeric pragma; 0, 1
    and the boolean words for a flag (SQLite reads a flag's number through an 8-bit cast and a sign as
    "not a number"). Keywords such as ``NORMAL`` or ``MEMORY`` give None: the pool then restores the
    pragma without trying to prove it unchanged, which is always safe.
    """
    if name in FLAGS:
        word = value[0] if len(value) == 1 else ""
        return 1 if word in _TRUE else 0 if word in _FALSE else None
    sign = 1
    if len(value) == 2 and value[0] in ("+", "-"):
        sign, value = (-1 if value[0] == "-" else 1), value[1:]
    if len(value) != 1 or not value[0].isdigit():
        return None
    return sign * int(value[0])


def read(raw: sqlite3.Connection, name: str) -> int:
    """The current value of restorable pragma ``name``; raises sqlite3.Error if it cannot be read."""
    sql = "SELECT 'a' NOT LIKE 'A'" if name == CASE_SENSITIVE_LIKE else f"PRAGMA {name}"
    cursor = raw.cursor()
    try:
        row = cursor.execute(sql).fetchone()
    finally:
        cursor.close()  # never leave a statement active on a pooled connection
    if row is None or not isinstance(row[0], int):
        raise sqlite3.OperationalError(f"PRAGMA {name} gave no value to restore")
    return row[0]


def write(raw: sqlite3.Connection, name: str, value: int) -> None:
    """Set ``name`` to ``value``, a value :func:`read` returned: SQLite stores it exactly as given.

    Not read back: outside a transaction (the pool only restores after rollback, and refuses when a
    transaction stays open) a value SQLite itself reported always round-trips.
    """
    cursor = raw.cursor()
    try:
        cursor.execute(f"PRAGMA {name} = {int(value)}").fetchall()
    finally:
        cursor.close()


def journal_mode(raw: sqlite3.Connection) -> str:
    """The journal mode of ``raw``'s main database, as SQLite names it (without a value the pragma only
    reads it); raises sqlite3.Error if it cannot be read."""
    cursor = raw.cursor()
    try:
        row = cursor.execute("PRAGMA main.journal_mode").fetchone()
    finally:
        cursor.close()  # never leave a statement active on a pooled connection
    if row is None or not isinstance(row[0], str):
        raise sqlite3.OperationalError("PRAGMA journal_mode gave no mode")
    return row[0].lower()
