"""Per-connection PRAGMAs the pool reads back and restores, so a helper that sets them keeps its pool.

Legacy helpers often run ``PRAGMA foreign_keys = ON`` (or ``busy_timeout``, ``synchronous``...) on every
new connection. Discarding every connection that did so would make pooling useless for them, so for the
pragmas named here the pool instead remembers, per raw connection, the value it had before a borrower
first changed it (the value a fresh ``sqlite3.connect`` with the same arguments gives), and on return
writes that value back where it differs. A pragma set to the value it already has therefore costs a read
and no write. Anything not listed here (``journal_mode``, ``locking_mode``, ``writable_schema``, process-wide
or deprecated pragmas) still makes the connection dirty: closed on return, not reused.

``case_sensitive_like`` has no getter. Rather than trusting the value last written (which SQLite may
have parsed differently, or ignored), its state is read back through its effect: ``'a' LIKE 'A'`` is
true exactly when LIKE is case-insensitive. That holds as long as nobody replaced ``like()``, and doing
so (``create_function``, an extension) makes the connection dirty anyway.
"""

from __future__ import annotations

import sqlite3

#: Pragmas whose value belongs to the connection and reads back as one integer (``PRAGMA name``).
#: Per-schema ones (cache_size, synchronous, ...) are only handled for ``main`` (see statements.py).
READABLE = frozenset(
    {
        "analysis_limit",
        "automatic_index",
        "busy_timeout",
        "cache_size",
        "cell_size_check",
        "defer_foreign_keys",
        "foreign_keys",
        "ignore_check_constraints",
        "journal_size_limit",
        "legacy_alter_table",
        "max_page_count",
        "mmap_size",
        "query_only",
        "recursive_triggers",
        "reverse_unordered_selects",
        "secure_delete",
        "synchronous",
        "temp_store",
        "threads",
        "trusted_schema",
        "wal_autocheckpoint",
    }
)
#: Write-only: read back through its effect on LIKE (see the module docstring).
CASE_SENSITIVE_LIKE = "case_sensitive_like"
RESTORABLE = READABLE | {CASE_SENSITIVE_LIKE}


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


def restore(raw: sqlite3.Connection, name: str, value: int) -> bool:
    """Set ``name`` back to ``value`` if it differs; True when it now reads back as ``value``."""
    if read(raw, name) == value:
        return True
    cursor = raw.cursor()
    try:
        cursor.execute(f"PRAGMA {name} = {int(value)}").fetchall()
    finally:
        cursor.close()
    return read(raw, name) == value
