"""Switching a file database to WAL, only where that is safe.

WAL lets readers and one writer proceed concurrently, which is what makes many pooled connections in one
process stop tripping over each other. But it is a *persistent* change to the user's file (``-wal`` and
``-shm`` files appear next to it, it does not work on network filesystems, and a backup that copies only
the main file may miss committed transactions still in the WAL), so poolshift switches only when:

- ``SQLITE_POOL_WAL`` is not false (it defaults to true);
- the database is a file opened read-write (no ``mode=ro``, ``immutable=1`` or ``nolock=1`` URI);
- the file is in SQLite's default ``delete`` mode, i.e. nobody chose a persistent mode for it;
- the caller has not set ``PRAGMA journal_mode`` on this database in this process (the caller's choice
  wins, and after it poolshift never touches the mode of that database again);
- no transaction is open (``autocommit=False`` connections are left alone).

The switch runs with a zero busy timeout so it can never stall ``connect()``: if another process holds a
lock the attempt is skipped and retried with the next new connection. ``synchronous`` is not touched, so
durability stays SQLite's default (FULL).
"""

from __future__ import annotations

import enum
import sqlite3


class WalOutcome(enum.Enum):
    SWITCHED = "switched"  # we changed the file to WAL
    KEPT = "kept"  # the file already has a mode we must respect (wal or another persistent choice)
    RETRY = "retry"  # could not switch now (locked, in a transaction): try again on the next connection


def _scalar(raw: sqlite3.Connection, sql: str) -> object:
    cursor = raw.cursor()
    try:
        row = cursor.execute(sql).fetchall()
    finally:
        cursor.close()  # never leave a statement active on a connection we are about to pool
    return row[0][0] if row else None


def try_enable_wal(raw: sqlite3.Connection) -> WalOutcome:
    """Switch ``raw``'s database to WAL if it is in the default mode; never raises, never waits."""
    try:
        mode = str(_scalar(raw, "PRAGMA journal_mode")).lower()
        if mode != "delete":
            return WalOutcome.KEPT
        if raw.in_transaction:
            return WalOutcome.RETRY
        busy = int(_scalar(raw, "PRAGMA busy_timeout"))  # type: ignore[call-overload]
        try:
            _scalar(raw, "PRAGMA busy_timeout = 0")
            new_mode = str(_scalar(raw, "PRAGMA journal_mode = WAL")).lower()
        finally:
            _scalar(raw, f"PRAGMA busy_timeout = {busy}")
    except sqlite3.Error:
        return WalOutcome.RETRY
    return WalOutcome.SWITCHED if new_mode == "wal" else WalOutcome.RETRY
