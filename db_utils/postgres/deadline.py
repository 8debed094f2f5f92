"""Bound a blocking libpq call in time: past its deadline, the connection's socket is shut down.

psycopg2 has no per-call timeout. The alternatives, and why this one:

- ``statement_timeout`` is enforced by the server: a hung server (or a network path that silently
  stopped forwarding) never enforces it.
- ``connection.cancel()`` (libpq's ``PQcancel``) opens a *new* connection to the same address to send
  the cancel request: through a hung server or appliance that connection hangs too. Probed through a
  frozen proxy, it never returned and stalled every thread of the process, not just the caller.
- Running the ping in psycopg2's asynchronous mode needs an asynchronous connection; a pooled
  connection is a synchronous one.
- ``shutdown(SHUT_RDWR)`` on the connection's socket, from another thread, makes the blocked
  ``recv``/``send`` return at once; libpq reports "server closed the connection unexpectedly" and
  the connection is marked broken. It needs no network and cannot block. The descriptor stays open
  (libpq still owns and closes it), so it cannot be reused under libpq's feet.

One daemon thread serves every deadline (a thread per call would cost more than the ping it guards).
A guarded call whose deadline fired must be treated as failed even if it returned: the socket is gone.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from types import TracebackType


class Deadline:
    """``with Deadline(fd, seconds) as guard:`` shut down socket ``fd`` if the block outlives ``seconds``.

    After the block, ``guard.fired`` says whether the socket was shut down (the connection is then
    unusable and must be invalidated).
    """

    __slots__ = ("_entry", "fired")

    def __init__(self, fd: int, seconds: float) -> None:
        self.fired = False
        # The socket's identity: if libpq closed the descriptor and the number was reused by the time the
        # deadline fires (a window of microseconds), the watchdog must not touch someone else's socket.
        identity = os.fstat(fd)
        target = (fd, identity.st_dev, identity.st_ino)
        self._entry: list[object] = [time.monotonic() + seconds, next(_sequence), target, self]

    def __enter__(self) -> Deadline:
        _watchdog().schedule(self._entry)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _watchdog().cancel(self._entry)


_sequence = itertools.count()  # tie-breaker: heap entries never compare their Deadline objects


class _Watchdog:
    """The thread that fires deadlines. ``_lock`` guards the heap and every firing: once ``cancel``
    returns, no shutdown of that entry's socket can happen any more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._heap: list[list[object]] = []
        self._pid = os.getpid()
        threading.Thread(target=self._run, name="poolshift-deadlines", daemon=True).start()

    def schedule(self, entry: list[object]) -> None:
        with self._lock:
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._wakeup.notify()

    def cancel(self, entry: list[object]) -> None:
        with self._lock:
            entry[2] = None  # lazily dropped from the heap when it comes up

    def _run(self) -> None:
        with self._lock:
            while True:
                if not self._heap:
                    self._wakeup.wait()
                    continue
                entry = self._heap[0]
                remaining = float(entry[0]) - time.monotonic()  # type: ignore[arg-type]
                if entry[2] is not None and remaining > 0:
                    self._wakeup.wait(remaining)
                    continue
                heapq.heappop(self._heap)
                if entry[2] is not None:
                    _shut_down(entry[2])  # type: ignore[arg-type]
                    entry[3].fired = True  # type: ignore[attr-defined]


def _shut_down(target: tuple[int, int, int]) -> None:
    """Shut the socket down without closing the descriptor, which libpq owns."""
    fd, device, inode = target
    try:
        identity = os.fstat(fd)
        if (identity.st_dev, identity.st_ino) != (device, inode):
            return  # not the guarded socket any more
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()  # closes our duplicate only; the shutdown applies to the shared socket


_instance: _Watchdog | None = None
_instance_lock = threading.Lock()


def _watchdog() -> _Watchdog:
    """The process's watchdog, started on first use (and again in a forked child, which has no threads)."""
    global _instance  # noqa: PLW0603 - one lazily started thread per process
    instance = _instance
    if instance is None or instance._pid != os.getpid():
        with _instance_lock:
            instance = _instance
            if instance is None or instance._pid != os.getpid():
                instance = _instance = _Watchdog()
    return instance


def _after_fork_in_child() -> None:
    # The watchdog thread does not exist in a child, and a lock held by another parent thread at fork()
    # would stay held forever: start from scratch.
    global _instance, _instance_lock  # noqa: PLW0603
    _instance = None
    _instance_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
