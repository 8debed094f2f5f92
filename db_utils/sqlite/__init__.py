"""Pooled SQLite: ``connect()``, a drop-in for ``sqlite3.connect`` (see :mod:`db_utils.sqlite.connect`).

Layers, each importing only those below it: ``connect`` (the drop-in) -> ``proxy`` (the connection
object callers hold) -> ``cursor``, ``registry`` (pools by database, fork safety, stats) -> ``shared``
(the lock-serialised variants for ``check_same_thread=False``), ``pool`` (idle connections, reset, WAL)
-> ``target`` (what a call opens), ``statements`` (which SQL leaves state behind) -> ``pragmas`` (the
per-connection pragmas the pool reads back and restores).
"""

from db_utils.sqlite.connect import connect
from db_utils.sqlite.proxy import PooledConnection
from db_utils.sqlite.registry import dispose, pool_figures

__all__ = ["PooledConnection", "connect", "dispose", "pool_figures"]
