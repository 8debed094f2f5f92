"""Pooled PostgreSQL: the engines behind ``db_utils``' public API (re-exported by ``db_utils`` itself).

Layers, each importing only those below it: ``legacy`` (``get_postgres_connection``) -> ``api`` (borrow,
run, retry) -> ``registry`` (one engine per URL, fork safety, stats) -> ``instrument`` (pool events,
timeouts) -> ``fair_queue`` (FIFO hand-off), ``reset`` (what a returned connection must undo) ->
``driver`` (connections that track session state) -> ``statements`` (which SQL leaves session state);
``pgbouncer`` (connections whose session state ends with each transaction) sits on ``driver``.
``settings`` (URL, every pool knob, the legacy parameter table) and ``proxy`` (the handle a borrower
holds) sit beside them, importing nothing above.
"""
