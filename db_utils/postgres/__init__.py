"""Pooled PostgreSQL: the engines behind ``db_utils``' public API (re-exported by ``db_utils`` itself).

Layers, each importing only those below it: ``legacy`` (``get_postgres_connection``) -> ``api`` (borrow,
run, retry) -> ``lending`` (checkout and return without SQLAlchemy's fairy, over ``instrument`` and
``proxy``) and ``registry`` (one engine per URL, fork safety, stats) -> ``instrument`` (pool events,
timeouts) -> ``fair_queue`` (FIFO hand-off), ``reset`` (what a returned connection must undo) ->
``driver`` (connections that track session state) -> ``statements`` (which SQL leaves session state);
``pgbouncer`` (connections whose session state ends with each transaction) sits on ``driver``.
``settings`` (URL, every pool knob, the legacy parameter table) and ``proxy`` (the handle a borrower
holds, over ``leases``: who holds what) sit beside them, importing nothing above. ``deadline`` bounds a
blocking libpq call in time (used by ``instrument`` and ``api``). ``connect`` (the pooled drop-in for
``psycopg2.connect``, one pool per set of parameters) sits beside ``legacy`` at the top.
"""

from db_utils.postgres.connect import connect
from db_utils.postgres.proxy import driver_connection

__all__ = ["connect", "driver_connection"]
