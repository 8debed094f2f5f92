"""Who holds which pooled connection: the lease registry behind leak warnings and exhaustion errors.

Every handle checked out and not yet closed has a :class:`Lease` in :data:`outstanding`, keyed by the
handle's weak reference (whose callback returns a dropped handle's connection), or by the lease itself
when the borrower ends the lease in its own ``finally`` (``execute_with_pool``). A lease records where
it was taken (the first frame outside ``db_utils``) and when, so that:

- a pool that runs out of connections can say which call sites hold them (:func:`holders`);
- with ``DB_POOL_LEAK_THRESHOLD`` set, a lease held longer is reported once, naming its borrower
  (HikariCP's ``leakDetectionThreshold``), by one daemon thread that looks every fraction of the
  threshold instead of a timer per checkout.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import Counter
from types import CodeType, FrameType
from typing import Any

logger = logging.getLogger("db_utils.pool")

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


#: A closed psycopg2 connection still answers these (``psycopg2.connect(conn.dsn)`` reconnects a closed
#: one); they do not change while the connection lives, so a lease reads them once.
READABLE_AFTER_CLOSE = ("dsn", "server_version", "protocol_version")


class Lease:
    """One checked-out connection: its pool, where and when it was borrowed, and how it goes back.

    Subclasses say how a connection is returned or discarded (:mod:`db_utils.postgres.lending`): one
    lease object per pooled connection, re-armed at each checkout, or one per checkout of SQLAlchemy's
    own path. A lease is only ever in :data:`outstanding` while its connection is checked out.
    """

    __slots__ = ("after_close", "cursors", "display_url", "pool", "ref", "since", "warned", "where")

    def __init__(self, pool: Any, display_url: str, raw: Any = None) -> None:
        self.pool = pool
        self.display_url = display_url
        #: What psycopg2 still tells about a closed connection and the handle therefore keeps telling
        #: after ``close()`` (see :data:`READABLE_AFTER_CLOSE`), read once from the connection ``raw``.
        self.after_close: dict[str, Any] = {name: getattr(raw, name, None) for name in READABLE_AFTER_CLOSE}
        #: The borrower's call site: its code object and instruction offset (the line is worked out only
        #: when a message names it, see :func:`borrower`), or a ready-made description.
        self.where: str | Where | None = None
        self.since = 0.0
        self.warned = False
        #: The lease's key in :data:`outstanding` now: the weak reference to the handle lent now, dropped
        #: at close so the callback of a handle closed properly never runs; or the lease itself.
        self.ref: weakref.ref[Any] | Lease | None = None
        #: Weak references to the cursors handed out on this lease, once there are any.
        self.cursors: list[weakref.ref[Any]] | None = None

    def location(self) -> str:
        where = self.where
        if where is None:
            return "<unknown>"
        if isinstance(where, str):
            return where
        code, offset = where
        return f"{code.co_filename}:{_line_at(code, offset)}"

    def give_back(self) -> None:
        """Return the connection to its pool (reset there, or discarded if it cannot be)."""
        raise NotImplementedError

    def expose(self) -> None:
        """The borrower's code reached the real connection (see ``proxy.PooledConnection.expose``)."""
        raise NotImplementedError

    def invalidate(self, error: BaseException | None = None) -> None:
        """Close the connection for real; its pool slot is freed (the next checkout reconnects)."""
        raise NotImplementedError

    def invalidate_pool(self, error: BaseException) -> None:
        """After a disconnect: mark every connection of the pool as old as this one for replacement, and
        close this one (SQLAlchemy's ``Pool._invalidate``)."""
        raise NotImplementedError


# Handle weakref (or the lease itself) -> its lease. Holding the weakref here keeps it alive after its handle
# dies, so its callback runs. Single dict operations are atomic under the GIL; readers on other threads copy
# it first.
outstanding: dict[weakref.ref[Any] | Lease, Lease] = {}


#: A call site as :func:`borrower` records it: a code object and the offset of its current instruction.
Where = tuple[CodeType, int]


def borrower(frame: FrameType | None) -> Where | None:
    """The call site of ``frame``, or of its first caller outside ``db_utils``: two attribute reads in
    the everyday case, where the entry point passes its own caller's frame (no stack walk, no string).

    The instruction offset, not the line: ``f_lineno`` decodes the code's line table on every checkout,
    while the line is only needed by the rare message that names the borrower (:meth:`Lease.location`).
    """
    while frame is not None:
        code = frame.f_code
        if not code.co_filename.startswith(PACKAGE_DIR):
            return code, frame.f_lasti
        frame = frame.f_back
    return None


def _line_at(code: CodeType, offset: int) -> int | None:
    """The source line of the instruction at ``offset`` in ``code`` (what ``frame.f_lineno`` says)."""
    for start, end, line in code.co_lines():
        if start <= offset < end:
            return line
    return None


def holders(pool: Any, limit: int = 5) -> str:
    """The call sites holding ``pool``'s connections, most frequent first: ``a.py:3 (2), b.py:9 (1)``."""
    counts = Counter(lease.location() for lease in outstanding.copy().values() if lease.pool is pool)
    shown = ", ".join(f"{where} ({n})" for where, n in counts.most_common(limit))
    more = len(counts) - limit
    return shown + (f" and {more} more call site(s)" if more > 0 else "")


# -- leak detection -------------------------------------------------------------------------------------

_sweeper_lock = threading.Lock()
_sweeper_pid: int | None = None


def watch_for_leaks() -> None:
    """Start the leak sweeper of this process, once (a forked child starts its own on first use)."""
    global _sweeper_pid  # noqa: PLW0603 - one thread per process
    if _sweeper_pid == os.getpid():
        return
    with _sweeper_lock:
        if _sweeper_pid != os.getpid():
            _sweeper_pid = os.getpid()
            threading.Thread(target=_sweep_forever, name="poolshift-leaks", daemon=True).start()


def _sweep_forever() -> None:
    while True:
        time.sleep(_sweep())


def _sweep() -> float:
    """Warn about every lease over its pool's threshold not yet reported; returns how long to sleep."""
    now, period = time.monotonic(), 1.0
    for lease in outstanding.copy().values():
        threshold = _threshold(lease)
        if threshold <= 0:
            continue
        period = min(period, threshold / 4)
        if not lease.warned and now - lease.since >= threshold:
            lease.warned = True
            logger.warning(
                "possible connection leak: a pooled connection to %s checked out at %s has been held for "
                "more than %g s (DB_POOL_LEAK_THRESHOLD) and not closed",
                lease.display_url,
                lease.location(),
                threshold,
            )
    return max(period, 0.05)


def _threshold(lease: Lease) -> float:
    state = getattr(lease.pool, "poolshift_state", None)
    return float(state.settings.leak_threshold) if state is not None else 0.0
