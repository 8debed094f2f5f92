"""The process-wide registry of SQLite pools: lookup, fork safety, disposal and the stats source.

Fork: SQLite connections must not be used in a child after ``fork()``. The child hook installs a fresh,
empty registry (new lock too: the old one may have been held by a thread that does not exist in the
child) and moves the pools' generation on (``pool.next_generation``). Pools from the parent keep their
old generation, so a parent connection that is closed in the child is abandoned instead of pooled, and
the child only ever borrows connections it opened itself.

Exit: every idle connection is closed, as an application closing its own connections would, so SQLite
checkpoints and removes each database's ``-wal`` and ``-shm``. SQLite declines to do that for a database
deleted while the pool kept a connection to it open (code that closed, then deleted); :func:`dispose`
removes those side files itself once no connection of the process has them open.
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import threading
from typing import Any

from db_utils import stats
from db_utils.sqlite import pool as pool_module
from db_utils.sqlite.pool import (
    ConnectOptions,
    SQLitePool,
    SQLitePoolSettings,
    abandon,
    close_gone_idle,
    next_generation,
    remove_orphaned_side_files,
)
from db_utils.sqlite.target import Target

PoolKey = tuple[str, ConnectOptions]
#: The kind the lifecycle events (:class:`db_utils.stats.PoolEvent`) name.
KIND = "sqlite"


class _Registry:
    def __init__(self) -> None:
        self.pools: dict[PoolKey, SQLitePool] = {}
        # The caller's own arguments -> pool, for names whose meaning does not depend on the current
        # directory. Skips path resolution on the hot path; plain dict reads, filled on first use.
        self.by_arguments: dict[tuple[Any, ...], SQLitePool] = {}
        # Only guards *creating* a pool (lookups are plain dict reads, atomic under the GIL), so two
        # threads opening the same database for the first time end up sharing one pool.
        self.lock = threading.Lock()


_registry = _Registry()


def pool_for_arguments(arguments: tuple[Any, ...]) -> SQLitePool | None:
    """The pool already serving exactly these ``connect()`` arguments, if any (the hot path)."""
    try:
        return _registry.by_arguments.get(arguments)
    except TypeError:  # an unhashable argument: the slow path hands it to sqlite3.connect
        return None


def borrow(
    target: Target, options: ConnectOptions, arguments: tuple[Any, ...]
) -> tuple[SQLitePool, sqlite3.Connection]:
    """A pool and a raw connection from it; sqlite3's own exceptions propagate unchanged.

    ``arguments`` (the caller's raw ``connect()`` arguments) becomes a hot-path alias of the pool when the
    target does not depend on the current directory.
    """
    registry = _registry
    key = (target.identity, options)
    pool = registry.pools.get(key)
    if pool is not None:
        if target.cwd_independent:
            registry.by_arguments[arguments] = pool
        return pool, pool.checkout()
    settings = SQLitePoolSettings.from_env()  # a bad SQLITE_POOL_* value fails here, naming the variable
    raw = options.open(target.open_name)  # before registering: a bad argument leaves no empty pool behind
    created = False
    forgotten: list[SQLitePool] = []
    with registry.lock:
        pool = registry.pools.get(key)
        if pool is None:
            pool = SQLitePool(target, options, settings)
            registry.pools[key] = pool
            created = True
            if len(registry.pools) > POOLS_KEPT:
                forgotten = _forget_unused(registry)
        if target.cwd_independent:
            registry.by_arguments[arguments] = pool
    for old in forgotten:
        stats.notify(stats.PoolEvent("disposed", KIND, pool_name(old), {}))
    if created:
        figures = {"size": settings.idle_size, "wal": settings.wal}
        stats.notify(stats.PoolEvent("created", KIND, pool_name(pool), figures))
        # A new database is where a process that goes through many (one per test) leaves old ones
        # behind, deleted or not: a few stats next to opening a file, and the deleted ones close now.
        close_gone_idle()
    pool.adopt_new(raw)
    return pool, raw


#: Pools kept for databases that have no connection open: beyond it, the oldest such pools are forgotten.
#: A process that opens a new database per task (a temporary directory each) would otherwise keep a pool,
#: and its figures, for every database it ever saw.
POOLS_KEPT = 256


def _forget_unused(registry: _Registry) -> list[SQLitePool]:
    """Drop the oldest pools holding no connection (none idle, none lent), down to :data:`POOLS_KEPT`;
    called under the registry lock. A checkout racing with this, from the lock-free lookup, still works:
    the forgotten pool closes on return what it lends (as after :func:`dispose`)."""
    excess = len(registry.pools) - POOLS_KEPT
    dropped: list[SQLitePool] = []
    for key, pool in list(registry.pools.items()):
        if len(dropped) >= excess:
            break
        if pool.holds_connections():
            continue
        pool.retire()
        del registry.pools[key]
        dropped.append(pool)
    if dropped:
        gone = {id(pool) for pool in dropped}
        for arguments, pool in list(registry.by_arguments.items()):
            if id(pool) in gone:
                del registry.by_arguments[arguments]
    return dropped


def dispose() -> None:
    """Close every idle connection and forget every pool; borrowed connections close normally later."""
    registry = _registry
    with registry.lock:
        pools = list(registry.pools.values())
        registry.by_arguments.clear()
        registry.pools.clear()
    for pool in pools:
        pool.close_idle()
        pool.retire()
        stats.notify(stats.PoolEvent("disposed", KIND, pool_name(pool), {}))
    _remove_orphaned_side_files(pools)


def _remove_orphaned_side_files(pools: list[SQLitePool]) -> None:
    """The ``-wal`` and ``-shm`` of databases deleted while their connections idled, once none of
    ``pools`` (all of them, just disposed) has a connection to that file open any more."""
    by_path: dict[str, list[SQLitePool]] = {}
    for pool in pools:
        by_path.setdefault(pool.target.file_path, []).append(pool)
    for path, group in by_path.items():
        if any(pool.holds_connections() for pool in group):
            continue  # still lent: its close is the last one (sqlite3 would not remove them either)
        for wal in {pool.wal_file for pool in group}:
            remove_orphaned_side_files(path, wal)


def _file_unused_elsewhere(pool: SQLitePool) -> bool:
    """No pool but ``pool`` has a connection to its file open (pool.py's side-file removal asks)."""
    path = pool.target.file_path
    return not any(
        other.holds_connections()
        for other in list(_registry.pools.values())
        if other is not pool and other.target.file_path == path
    )


def pool_name(pool: SQLitePool) -> str:
    """The password-free name ``pool_status()`` and the lifecycle events use for ``pool``."""
    extra = pool.options.describe()
    return f"{pool.target.label} [{extra}]" if extra else pool.target.label


def pool_figures() -> dict[str, Any]:
    """Per-database figures for ``pool_status()``: PoolCounters plus idle count and WAL state."""
    figures: dict[str, Any] = {}
    for pool in list(_registry.pools.values()):
        figures[pool_name(pool)] = pool.snapshot()
    return {"databases": figures}


def _after_fork_in_child() -> None:
    global _registry  # noqa: PLW0603 - the whole registry is replaced, atomically, in the child
    old = _registry
    for pool in list(old.pools.values()):
        for raw in pool.take_idle():
            abandon(raw)
    next_generation()
    _registry = _Registry()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
# Closing idle connections at exit lets SQLite checkpoint and remove the -wal file, as it would for an
# application that closed its own connections. After fork the registry holds only the child's own pools.
atexit.register(dispose)
pool_module.file_unused_elsewhere = _file_unused_elsewhere
stats.register_source("sqlite", pool_figures)
stats.register_disposer("sqlite", dispose)
