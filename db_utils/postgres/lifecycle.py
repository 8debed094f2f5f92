"""A PostgreSQL pool's lifecycle (created, exhausted, recovered, disposed), told to ``stats.notify``.

Exhaustion follows the line of checkouts waiting for a connection (:mod:`db_utils.postgres.fair_queue`):
a checkout joining an empty line makes the pool *exhausted* (every connection is in use and someone
waits), the line emptying again (the last waiter served, or timed out) makes it *recovered*. Only a
checkout that waits reaches this module, so a checkout finding a free connection pays nothing for it.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from db_utils import stats

KIND = "postgres"


class _Pool(Protocol):
    def waiting(self) -> int: ...
    def checkedout(self) -> int: ...


class _State(Protocol):
    display_url: str

    @property
    def counters(self) -> stats.PoolCounters: ...
    @property
    def settings(self) -> Any: ...


class LineWatch:
    """Whether one pool is exhausted; tells the listeners when that changes, in the order it changed.

    The lock is held while the listeners run, so two threads' changes (one joining, one leaving the
    line) are never told in the wrong order. Listeners must therefore not wait for a connection.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exhausted = False

    def line_changed(self, pool: _Pool, state: _State) -> None:
        """A checkout joined or left the line: notify ``exhausted``/``recovered`` if that changed it."""
        with self._lock:
            waiting = pool.waiting()
            if (waiting > 0) == self.exhausted:
                return
            self.exhausted = waiting > 0
            counters = state.counters.snapshot()
            stats.notify(
                stats.PoolEvent(
                    "exhausted" if self.exhausted else "recovered",
                    KIND,
                    state.display_url,
                    {
                        "active": pool.checkedout(),
                        "max": _bound(state),
                        "waiting": waiting,
                        "waits": counters["waits"],
                        "timeouts": counters["timeouts"],
                    },
                )
            )


def created(state: _State) -> None:
    """The pool exists (no connection opened yet)."""
    settings = state.settings
    figures = {"size": settings.pool_size, "max": _bound(state), "mode": settings.mode}
    stats.notify(stats.PoolEvent("created", KIND, state.display_url, figures))


def disposed(state: _State) -> None:
    """The pool was closed and forgotten (its checked-out connections close when returned)."""
    counters = state.counters.snapshot()
    figures = {"checkouts": counters["checkouts"], "connections_created": counters["connections_created"]}
    stats.notify(stats.PoolEvent("disposed", KIND, state.display_url, figures))


def _bound(state: _State) -> int:
    return int(state.settings.pool_size + state.settings.max_overflow)
