"""One pool of raw ``sqlite3`` connections per database and connection options, and its WAL switch.

Why a lean deque and not SQLAlchemy's QueuePool (which the PostgreSQL pools use): a local file connection
is cheap enough that QueuePool's own bookkeeping would eat most of what pooling saves (bench/README.md
has the figures), and nothing QueuePool adds is wanted here: pre-ping is meaningless for a local file,
and its size limit and checkout timeout would make ``connect()`` block or fail where ``sqlite3.connect``
never does. So checkouts are never limited (an empty pool opens a new connection, like sqlite3);
``SQLITE_POOL_SIZE`` only bounds how many *idle* connections are kept per database.

Idle connections of all databases together are bounded too (``SQLITE_POOL_MAX_IDLE_TOTAL``), least
recently returned closed first. Without that bound a process that opens many databases (a test suite with
a fresh database per test) keeps every one of them open, three file descriptors each in WAL mode, until it
runs out of descriptors, where sqlite3 would hold none after ``close()``. The bound is kept by one
process-wide ordered dict of idle connections (``_IDLE``); see :func:`evict_idle` for how it shares
ownership of an idle connection with its pool without a second lock on the hot path.

Raw connections are opened with ``check_same_thread=False`` so any thread may borrow them; the proxy
enforces the caller's own ``check_same_thread``.

WAL: switching a file database to WAL lets readers and one writer proceed concurrently, which is what
makes many pooled connections in one process stop tripping over each other. But it is a *persistent*
change to the user's file (``-wal`` and ``-shm`` files appear next to it, it does not work on network
filesystems, and a backup that copies only the main file may miss committed transactions still in the
WAL), so poolshift switches only when:

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

import contextlib
import enum
import itertools
import os
import sqlite3
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no POSIX locks to ask whether another process is in
    fcntl = None  # type: ignore[assignment]
if sys.platform != "win32":
    import resource

from db_utils.config import check_minimum, env_bool, env_int
from db_utils.sqlite import pragmas
from db_utils.sqlite.target import Target, file_identity, wal_identity
from db_utils.stats import POOL_FIGURES, PoolCounters

#: The pool figures, plus how many pragma values were written back on return (see pragmas.py), how
#: many WAL checkpoints the pool ran (see SQLitePool.checkin) and how many idle connections were closed
#: to keep the process-wide idle total (see evict_idle).
SQLITE_FIGURES = {**POOL_FIGURES, "pragmas_restored": 0, "checkpoints": 0, "evicted": 0}

_RETURNED = "returned to the pool"  # what checkin() reports for a connection kept idle


#: Idle connections of all databases together, at most (see default_max_idle_total).
MAX_IDLE_TOTAL = 64
#: Each idle connection holds up to three file descriptors: the database, its -wal and its -shm.
_DESCRIPTORS_PER_CONNECTION = 3


def default_max_idle_total() -> int:
    """:data:`MAX_IDLE_TOTAL`, or fewer where the process may open few files: idle connections then hold
    at most a quarter of its soft ``RLIMIT_NOFILE``, since sqlite3 itself holds none after ``close()``
    and the rest belongs to the application (the common soft limit of 1024 allows all 64)."""
    if sys.platform == "win32":  # no descriptor limit of this kind
        return MAX_IDLE_TOTAL
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return MAX_IDLE_TOTAL
    return min(MAX_IDLE_TOTAL, soft // 4 // _DESCRIPTORS_PER_CONNECTION)


@dataclass(frozen=True)
class SQLitePoolSettings:
    """``idle_size``: idle connections kept per database (``SQLITE_POOL_SIZE``, default 5, minimum 0;
    0 turns reuse off). ``wal``: allow switching file databases to WAL (``SQLITE_POOL_WAL``, default true).
    ``max_idle_total``: idle connections kept by all pools of the process together
    (``SQLITE_POOL_MAX_IDLE_TOTAL``, minimum 0; default :func:`default_max_idle_total`). A pool enforces
    the total its own settings carry whenever it keeps a connection.
    """

    idle_size: int = 5
    wal: bool = True
    max_idle_total: int = MAX_IDLE_TOTAL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SQLitePoolSettings:
        return cls(
            idle_size=env_int("SQLITE_POOL_SIZE", cls.idle_size, minimum=0, environ=environ),
            wal=env_bool("SQLITE_POOL_WAL", cls.wal, environ=environ),
            max_idle_total=env_int(
                "SQLITE_POOL_MAX_IDLE_TOTAL", default_max_idle_total(), minimum=0, environ=environ
            ),
        )

    def __post_init__(self) -> None:
        check_minimum("SQLITE_POOL_SIZE", self.idle_size, 0)
        check_minimum("SQLITE_POOL_MAX_IDLE_TOTAL", self.max_idle_total, 0)


@dataclass(frozen=True)
class ConnectOptions:
    """Every ``sqlite3.connect`` argument that changes how a connection behaves, hence part of the pool key.

    ``check_same_thread`` is absent (the proxy enforces it) and so is ``factory`` (non-default factories are
    never pooled). ``extra`` carries version-specific arguments such as 3.12's ``autocommit``.
    """

    timeout: Any
    detect_types: Any
    isolation_level: Any
    cached_statements: Any
    uri: Any
    extra: tuple[tuple[str, Any], ...] = ()

    def open(self, name: str) -> sqlite3.Connection:
        return sqlite3.connect(
            name,
            timeout=self.timeout,
            detect_types=self.detect_types,
            isolation_level=self.isolation_level,
            check_same_thread=False,
            cached_statements=self.cached_statements,
            uri=self.uri,
            **dict(self.extra),
        )

    def describe(self) -> str:
        """Non-default options, for the stats label (``timeout=1.0 detect_types=1``)."""
        defaults = {"timeout": 5.0, "detect_types": 0, "isolation_level": "", "cached_statements": 128}
        shown = [f"{k}={getattr(self, k)!r}" for k, v in defaults.items() if getattr(self, k) != v]
        shown += [f"{k}={v!r}" for k, v in self.extra]
        return " ".join(shown)


class SQLitePool:
    """Idle raw connections for one (database, options) pair, plus the reset that makes reuse invisible."""

    def __init__(self, target: Target, options: ConnectOptions, settings: SQLitePoolSettings):
        self.target = target
        self.options = options
        self.settings = settings
        self.generation = _generation
        self.counters = PoolCounters(SQLITE_FIGURES)
        self._path = target.file_path
        self._idle: deque[sqlite3.Connection] = deque()
        # Guards the idle bound (check length, then append) and the checkout/checkin figures
        # (``checkouts``, ``reuses``, ``checkins``, ``checked_out``): only this pool writes them, always
        # under this lock, in the one lock section each checkout and checkin has anyway (the counters'
        # own lock would be a second). Reentrant because a proxy's finalizer may run on this thread, from
        # the garbage collector, while the lock is held, and it returns a connection.
        self._lock = threading.RLock()
        # Serialises the one-off WAL decision so two first connections do not both attempt the switch.
        self._wal_lock = threading.Lock()
        self._wal_pending = settings.wal and target.wal_allowed
        self.wal_switched = False
        self._isolation_baseline: Any = None
        self._have_baseline = False
        # Per raw connection (sqlite3 connections cannot be weakly referenced, so entries are dropped
        # where the pool closes or sets aside a connection): the value each restorable pragma had before
        # a borrower first changed it, i.e. what a fresh connection with these options has.
        self._pragma_baselines: dict[sqlite3.Connection, dict[str, int]] = {}
        # Per raw connection, the (device, inode) of the file it opened: a connection whose path now names
        # another file, or none, is never reused (see target.py).
        self._files: dict[sqlite3.Connection, tuple[int, int] | None] = {}
        # The -wal file this pool's connections have open (None: none seen yet). Per pool, not per
        # connection: SQLite shares one -shm mapping between all connections of a process to a file, so
        # once the -wal is deleted or replaced every idle connection is stale, including one that never
        # opened it (its first read would join the others' stale mapping).
        self._wal_path = target.file_path + "-wal"
        self._wal_file: tuple[int, int] | None = None
        # Connections not yet returned once: the pool looks for the -wal when they are (see checkin).
        self._unprobed: set[sqlite3.Connection] = set()
        # A lease wrote and no checkpoint has copied the WAL into the main file since (see checkin).
        self._unsynced = False

    # -- checkout ---------------------------------------------------------------------------------------
    def checkout(self) -> sqlite3.Connection:
        """An idle connection, or a new one; never waits (sqlite3.connect never does).

        An idle connection is reused only while the path still names the file it opened and the ``-wal``
        file next to it is the one the pool's connections have open: after either was deleted, renamed or
        replaced, idle connections are stale (a write would go to a file no other connection reads), so
        they are closed and a new one opens whatever is at the path now, as ``sqlite3.connect`` would.
        The files are looked up before an idle connection is taken (once per call, outside the lock): a
        change after that lookup is one that happened after this ``connect()``, as with sqlite3.
        """
        current = file_identity(self._path)
        wal = self._wal_file
        if wal is not None and current is not None and file_identity(self._wal_path) != wal:
            current = None  # every idle connection has the old -wal (or its -shm mapping): all stale
        counters = self.counters
        lock = self._lock
        lock.acquire()  # not a with block: this section is most of a checkout's own cost
        try:
            try:
                raw = self._idle.pop()
            except IndexError:
                stale = None
            else:
                if _IDLE.pop(raw, None) is None:
                    stale = None  # evict_idle claimed it first and closes it: open a new one instead
                elif current is not None and self._files.get(raw) == current:
                    counters.checkouts += 1
                    counters.checked_out += 1
                    counters.reuses += 1
                    return raw
                stale = raw
        finally:
            lock.release()
        if stale is not None:
            self._wal_file = None  # noted afresh when the new connection is returned
            self.counters.add(invalidated=1)
            self._close_stale(stale)
            self._close_stale_idle(current)
        return self._open_new()

    def _open_new(self) -> sqlite3.Connection:
        try:
            raw = self.options.open(self.target.open_name)
        except Exception:
            self.counters.add(connect_failures=1)
            raise
        self.adopt_new(raw)
        return raw

    def _close_stale_idle(self, current: tuple[int, int] | None) -> None:
        """Close the idle connections that do not have ``current``, the file now at the path, open (all of
        them if None)."""
        claimed = []
        with self._lock:
            for raw in [raw for raw in self._idle if current is None or self._files.get(raw) != current]:
                self._idle.remove(raw)
                if _IDLE.pop(raw, None) is not None:  # else evict_idle claimed it and closes it
                    claimed.append(raw)
        for raw in claimed:
            self.counters.add(invalidated=1)
            self._close_stale(raw)

    def _close_stale(self, raw: sqlite3.Connection) -> None:
        """Close a connection whose file or -wal is no longer the one at the path, without side effects.

        Closing the last connection to a file makes SQLite checkpoint and delete ``<path>-wal`` and
        ``-shm``: the files at the *path*, which now belong to someone else (another process may have
        written to a new -wal since). Python 3.12+ can tell SQLite not to; 3.11 cannot, so there the
        close behaves as sqlite3's own close of a connection left open across the change would.
        """
        self._forget(raw)
        if sys.version_info >= (3, 12):
            with contextlib.suppress(sqlite3.Error):
                raw.setconfig(sqlite3.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, True)
        _close_quietly(raw)

    def adopt_new(self, raw: sqlite3.Connection) -> None:
        """Account for a freshly opened connection, about to be lent, and apply the one-off WAL switch to
        its database."""
        self._files[raw] = file_identity(self._path)
        self._unprobed.add(raw)
        if not self._have_baseline:
            self._isolation_baseline = raw.isolation_level
            self._have_baseline = True
        self.counters.add(connections_created=1)
        counters = self.counters
        with self._lock:
            counters.checkouts += 1
            counters.checked_out += 1
        if self._wal_pending:
            with self._wal_lock:
                if self._wal_pending:
                    outcome = try_enable_wal(raw)
                    self._wal_pending = outcome is WalOutcome.RETRY
                    self.wal_switched = outcome is WalOutcome.SWITCHED

    def pragmas_to_restore(
        self, raw: sqlite3.Connection, writes: tuple[tuple[str, int | None], ...]
    ) -> list[str] | None:
        """Before a borrower's pragma ``writes`` run on ``raw``: the names that must be restored on return.

        A value not yet noted for ``raw`` is read now, so it is still the fresh connection's (any earlier
        change was noted first and undone on return). A write of a literal equal to the noted value needs
        no restore. None if a value could not be read: the caller then marks the connection dirty.
        """
        baseline = self._pragma_baselines.get(raw)
        if baseline is None:
            baseline = self._pragma_baselines[raw] = {}
        changed = []
        try:
            for name, value in writes:
                noted = baseline.get(name)
                if noted is None:
                    noted = baseline[name] = pragmas.read(raw, name)
                if value != noted:
                    changed.append(name)
        except sqlite3.Error:
            return None
        return changed

    # -- checkin ----------------------------------------------------------------------------------------
    def checkin(
        self,
        raw: sqlite3.Connection,
        dirty: str | None = None,
        touched: set[str] | None = None,
        wrote: bool = False,
    ) -> str:
        """Reset and keep ``raw``, or close it if it cannot be made indistinguishable from a fresh one.

        ``dirty`` says what the borrower did that cannot be undone (None: nothing); ``touched`` names the
        restorable pragmas it set; ``wrote``: the lease may have written to the database. Returns what
        happened, in words, for the dropped-connection warning.

        With sqlite3, closing the last connection copies the WAL into the main file. Pooled connections
        stay open, so the pool does that copy itself: when a lease that wrote is returned, or any lease
        is returned after one that wrote while others were out, and no connection of this pool is
        checked out any more, it runs a passive checkpoint (which never waits for other connections).
        Whenever no caller holds a connection, the main file then holds every committed row, as after a
        legacy ``close()``; read-only leases never checkpoint.
        """
        if self.generation != _generation:
            self._count_checkin()
            self._forget(raw)
            abandon(raw)  # inherited across fork(): never used, never closed here (see registry.py)
            return "set aside, not pooled: it was inherited across fork()"
        if wrote:
            self._unsynced = True
        failure = dirty or self._reset(raw, touched)
        if not failure and self._wal_file is None and (wrote or raw in self._unprobed):
            # The -wal a read or write in WAL mode opened, if any. Once noted it stays (checkouts compare
            # it): it changes only if someone deletes or replaces it, which is what they detect. Looked for
            # on a connection's first return and after writes only, so that a pool whose database has no
            # -wal (another journal mode, or nothing but table-less queries) pays no file lookup per call.
            self._unprobed.discard(raw)
            self._wal_file = wal_identity(self._wal_path)
        counters = self.counters
        lock = self._lock
        lock.acquire()  # not a with block: this section is most of a checkin's own cost
        try:
            counters.checkins += 1
            counters.checked_out -= 1
            last = not counters.checked_out
            # The common return: clean, nothing to checkpoint, room in the pool.
            kept = not failure and not (last and self._unsynced) and len(self._idle) < self.settings.idle_size
            if kept:
                self._idle.append(raw)
                _IDLE[raw] = self  # a new key: the most recently used end
        finally:
            lock.release()
        if kept:  # the common case again: under the total, so no call to evict
            return self._within_total(raw) if len(_IDLE) > self.settings.max_idle_total else _RETURNED
        if dirty is not None:
            self.counters.add(discarded_dirty=1)
        elif failure:
            self.counters.add(invalidated=1)
            self._close(raw)  # unusable: the next checkin checkpoints, the flag stays set
            return f"closed: its state could not be reset ({failure})"
        if last:
            self._checkpoint(raw)
        if dirty is not None:
            self._close(raw)
            return f"closed: its state could not be reset ({dirty})"
        with self._lock:
            keep = len(self._idle) < self.settings.idle_size
            if keep:
                self._idle.append(raw)
                _IDLE[raw] = self
        if not keep:
            self._close(raw)
            return self._full_message()
        return self._within_total(raw)

    def _within_total(self, raw: sqlite3.Connection) -> str:
        """After keeping ``raw``: close the least recently used idle connections over the process-wide
        total (``raw`` itself only if the total is 0)."""
        limit = self.settings.max_idle_total
        if len(_IDLE) > limit and raw in evict_idle(limit):
            return "closed: the process keeps no idle connections (SQLITE_POOL_MAX_IDLE_TOTAL=0)"
        return _RETURNED

    def _count_checkin(self) -> None:
        with self._lock:
            self.counters.checkins += 1
            self.counters.checked_out -= 1

    def _checkpoint(self, raw: sqlite3.Connection) -> None:
        """Copy the WAL into the main file through ``raw`` if a write is pending (the caller saw no lease
        out).

        PASSIVE copies every frame no reader of another process still needs and never waits; if it
        could not copy them all (or failed), the flag stays set and the next return tries again.
        """
        if not self._unsynced:
            return
        self._unsynced = False  # before the checkpoint: a write returned meanwhile sets it again
        try:
            if raw.in_transaction:  # a dirty connection is closed without the reset's rollback
                raw.rollback()
            busy, frames, copied = _row(raw, "PRAGMA main.wal_checkpoint(PASSIVE)")
        except (sqlite3.Error, TypeError, ValueError):
            self._unsynced = True
            return
        self.counters.add(checkpoints=1)
        if busy or frames != copied:
            self._unsynced = True

    def _full_message(self) -> str:
        size = self.settings.idle_size
        if size == 0:
            return "closed: the pool keeps no idle connections (SQLITE_POOL_SIZE=0, or pools disposed)"
        return f"closed: the pool already keeps {size} idle connection(s) (SQLITE_POOL_SIZE)"

    def _reset(self, raw: sqlite3.Connection, touched: set[str] | None) -> str:
        """Roll back and restore what a borrower may have changed; what failed, or "" if all went well."""
        try:
            if raw.in_transaction:
                raw.rollback()
            # Order matters: restoring isolation_level to None would *commit* an open transaction.
            if raw.isolation_level != self._isolation_baseline:
                raw.isolation_level = self._isolation_baseline
            if raw.row_factory is not None:
                raw.row_factory = None
            if raw.text_factory is not str:
                raw.text_factory = str
            # autocommit=False (3.12+) reopens a transaction after every rollback by design.
            if raw.in_transaction and dict(self.options.extra).get("autocommit") is not False:
                return "a transaction is still open after rollback"
            return self._restore_pragmas(raw, touched) if touched else ""
        except sqlite3.Error as exc:
            return f"{type(exc).__name__}: {exc}"  # closed behind our back, or the rollback failed

    def _restore_pragmas(self, raw: sqlite3.Connection, touched: set[str]) -> str:
        """After the rollback (some pragmas cannot change inside a transaction): write back the values."""
        if raw.in_transaction:  # autocommit=False keeps one open: foreign_keys would silently stay set
            return "a transaction stays open (autocommit=False), so pragmas cannot be restored"
        baseline = self._pragma_baselines[raw]
        for name in touched:
            pragmas.write(raw, name, baseline[name])
        self.counters.add(pragmas_restored=len(touched))
        return ""

    # -- maintenance ------------------------------------------------------------------------------------
    def caller_keeps_journal_mode(self) -> None:
        """The caller set the journal mode the database already has: it chose it all the same, so this
        database is never switched again."""
        self._wal_pending = False

    def caller_sets_journal_mode(self) -> None:
        """The caller chose a journal mode: never switch this database again, and close idle connections so
        that their open handles do not stop the caller's change from taking effect."""
        self._wal_pending = False
        self.close_idle()

    def retire(self) -> None:
        """The registry forgot this pool (:func:`registry.dispose`, or too many pools): a connection it
        lent before, or lends to a lookup that raced with the forgetting, is closed on return."""
        self.settings = replace(self.settings, idle_size=0)

    def close_idle(self) -> None:
        with self._lock:
            idle = list(self._idle)
            self._idle.clear()
            claimed = [raw for raw in idle if _IDLE.pop(raw, None) is not None]  # else evict_idle closes it
        for raw in claimed:
            self._close(raw)

    def release_claimed(self, raw: sqlite3.Connection, figure: str) -> None:
        """Close ``raw``, an idle connection of this pool that evict_idle or close_gone_idle took out of
        ``_IDLE`` (so it is theirs alone), counting it as ``figure``.

        A connection whose file was deleted or replaced is closed as a stale one (its close must not touch
        the files now at the path). When that leaves the pool with no connection at all, the -wal this
        pool noted is forgotten (the next connection notes whatever is there then), and if the database
        was deleted, its -wal and -shm are removed as sqlite3's close before the delete would have done
        (see remove_orphaned_side_files).
        """
        with self._lock:
            with contextlib.suppress(ValueError):  # a checkout popped it, found it claimed, and left it
                self._idle.remove(raw)
            empty = not self._idle and not self.counters.checked_out
            wal = self._wal_file
            if empty:
                self._wal_file = None
        self.counters.add(**{figure: 1})
        opened = self._files.get(raw)
        if file_identity(self._path) == opened:
            self._close(raw)
            return
        self._close_stale(raw)
        if empty and file_unused_elsewhere(self):
            remove_orphaned_side_files(self._path, wal)

    @property
    def wal_file(self) -> tuple[int, int] | None:
        """The (device, inode) of the -wal this pool's connections have open, if one was noted."""
        return self._wal_file

    def holds_connections(self) -> bool:
        """Whether any connection of this pool is open in this process (idle or lent)."""
        return bool(self._idle) or bool(self.counters.checked_out)

    def take_idle(self) -> list[sqlite3.Connection]:
        """Remove and return every idle connection without closing it (used after fork)."""
        taken: list[sqlite3.Connection] = []
        while True:
            try:
                raw = self._idle.pop()
            except IndexError:
                return taken
            self._forget(raw)
            taken.append(raw)

    def _close(self, raw: sqlite3.Connection) -> None:
        self._forget(raw)
        _close_quietly(raw)

    def opened_file(self, raw: sqlite3.Connection) -> tuple[int, int] | None:
        """The (device, inode) of the file ``raw`` opened (None: none, or not a connection of this pool)."""
        return self._files.get(raw)

    def _forget(self, raw: sqlite3.Connection) -> None:
        self._pragma_baselines.pop(raw, None)
        self._files.pop(raw, None)
        self._unprobed.discard(raw)

    def snapshot(self) -> dict[str, Any]:
        data = self.counters.snapshot()
        data.update(idle=len(self._idle), idle_size=self.settings.idle_size, wal_switched=self.wal_switched)
        return data


def _close_quietly(raw: sqlite3.Connection) -> None:
    # Already closed, or closing failed: either way nothing is left for us to release.
    with contextlib.suppress(sqlite3.Error):
        raw.close()


#: Every idle connection of every pool of this process -> its pool, least recently returned first. An idle
#: connection is in its pool's deque *and* here; whoever removes it from here owns it: a checkout (under
#: the pool lock, right after popping it from the deque) or evict_idle / close_gone_idle (which then take
#: it out of the deque). A checkout that finds its connection already gone from here leaves it to them.
#: Single operations on it are atomic under the GIL (its keys hash and compare by identity, in C), so the
#: hot path pays one dict operation and no lock of its own.
_IDLE: OrderedDict[sqlite3.Connection, SQLitePool] = OrderedDict()

#: How many of the least recently used idle connections close_gone_idle looks at: one stat each.
GONE_CHECKS = 4

# The -shm byte every connection with the WAL index open holds a shared POSIX lock on (SQLite's
# UNIX_SHM_DMS): an exclusive lock on it is granted only when no other process has the database open.
_SHM_DMS_BYTE = 128


def evict_idle(limit: int) -> list[sqlite3.Connection]:
    """Close least recently used idle connections, of any pool, until at most ``limit`` remain; returns
    the connections closed."""
    evicted = []
    while len(_IDLE) > limit:
        try:
            raw, pool = _IDLE.popitem(last=False)
        except KeyError:  # another thread emptied it meanwhile
            break
        evicted.append(raw)
        pool.release_claimed(raw, "evicted")
    return evicted


def close_gone_idle(limit: int = GONE_CHECKS) -> None:
    """Close those of the ``limit`` least recently used idle connections whose path no longer names the
    file they opened (deleted or replaced).

    Called where a stat per connection is cheap next to what the caller does anyway (opening a new
    database): such a connection can never be reused (a checkout would close it) and, while open, holds a
    deleted file and its side files, so closing it early frees descriptors and disk space before the
    process-wide total would.
    """
    try:
        oldest = list(itertools.islice(_IDLE.items(), limit))
    except RuntimeError:  # another thread changed it while we read: the next new database looks again
        return
    for raw, pool in oldest:
        if file_identity(pool.target.file_path) == pool.opened_file(raw):
            continue
        if _IDLE.pop(raw, None) is pool:  # else a checkout or another eviction took it meanwhile
            pool.release_claimed(raw, "invalidated")


def _no_other_pool(pool: SQLitePool) -> bool:
    return False


#: Whether no other pool of this process has a connection to ``pool``'s file open (registry.py, which
#: knows every pool, installs the real check). Removing side files while a connection of this process
#: still has them open would drop SQLite's POSIX locks on them, so the default answer is no.
file_unused_elsewhere: Callable[[SQLitePool], bool] = _no_other_pool


def remove_orphaned_side_files(path: str, wal: tuple[int, int] | None) -> bool:
    """Delete ``path``'s ``-wal`` and ``-shm`` after the database at ``path`` was deleted; whether it did.

    Code that closes a sqlite3 connection and then deletes the database leaves nothing behind: the last
    close checkpointed and removed the side files. A pooled connection is still open when the file is
    deleted, and SQLite then refuses to checkpoint or remove anything on close (the database "has
    moved"), so the pool removes them itself, once no connection of this process has them open (the
    caller's job), under the conditions SQLite's own close has: no database at ``path`` any more (a new
    one may own the names), the ``-wal`` is the one the pool's connections had (``wal``), and no other
    process has the WAL index open (an exclusive lock on the -shm's DMS byte is granted). The lock is held
    until both are unlinked, so a process starting meanwhile waits for it like for SQLite's own.
    """
    if fcntl is None or wal is None or file_identity(path) is not None:
        return False
    if wal_identity(path + "-wal") != wal:
        return False
    shm = path + "-shm"
    try:
        fd = os.open(shm, os.O_RDWR)
    except FileNotFoundError:
        fd = -1  # no WAL index: nobody can be using it through shared memory
    except OSError:
        return False  # there, but we cannot ask who uses it: leave it
    try:
        if fd >= 0:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS_BYTE)
        if file_identity(path) is not None:  # a new database appeared meanwhile: the names are its
            return False
        os.unlink(path + "-wal")
        if fd >= 0:
            os.unlink(shm)
    except OSError:  # another process holds the WAL index, or the files went away meanwhile
        return False
    finally:
        if fd >= 0:
            os.close(fd)
    return True


# Connections inherited across fork(). SQLite forbids using them in the child, and closing them there
# could checkpoint or delete files the parent still uses, so they are kept referenced (never deallocated,
# never closed) for the child's lifetime. At most one pool's worth per database.
_ABANDONED: list[sqlite3.Connection] = []

# Which process generation pools are created in: registry.py moves it on at every fork(), in the child. A
# pool of an earlier generation was inherited, and sets aside the connections returned to it.
_generation = 0


def next_generation() -> None:
    """Called in a forked child: every pool that exists now was inherited from the parent."""
    global _generation  # noqa: PLW0603 - one number, read by every checkin
    _generation += 1
    _IDLE.clear()  # the registry took every idle connection out of its pool (take_idle) to abandon it


def abandon(raw: sqlite3.Connection) -> None:
    _ABANDONED.append(raw)


# -- WAL: see the module docstring for when poolshift switches ----------------------------------------


class WalOutcome(enum.Enum):
    SWITCHED = "switched"  # we changed the file to WAL
    KEPT = "kept"  # the file already has a mode we must respect (wal or another persistent choice)
    RETRY = "retry"  # could not switch now (locked, in a transaction): try again on the next connection


def _row(raw: sqlite3.Connection, sql: str) -> tuple[Any, ...]:
    """The first row of ``sql`` (empty if none), with no statement left active on ``raw``."""
    cursor = raw.cursor()
    try:
        rows = cursor.execute(sql).fetchall()
    finally:
        cursor.close()  # never leave a statement active on a connection we are about to pool
    return tuple(rows[0]) if rows else ()


def _scalar(raw: sqlite3.Connection, sql: str) -> object:
    row = _row(raw, sql)
    return row[0] if row else None


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
