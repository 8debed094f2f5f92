"""Kept-alive ``http.client`` connections for the direct path, per (scheme, host, port, TLS context).

The direct path sends with the very ``http.client`` connection class urllib's ``do_open`` uses, so what
goes on the wire and what comes back (exceptions included) is urllib's; only the connection outlives the
call. Idle connections wait here, newest first. A connection is checked out by one caller at a time and
comes back only once its response was read to the end; anything else closes it.

Like urllib3's pools, an idle connection the server has meanwhile closed is detected before it is used:
a closed socket (or one with unexpected bytes) is readable at once, so a zero-timeout poll finds it
without a round trip, and nothing (not even a POST) is sent on it.

Fork: a child forgets the parent's idle connections without touching them (see manager.py's docstring
for why a child must never write to an inherited socket).
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
from collections import OrderedDict
from typing import Any

from db_utils.http.response import DirectResponse
from db_utils.http.wire import counters

Key = tuple[str, str, int, "ssl.SSLContext | None"]

# Linux's TCP_QUICKACK (absent elsewhere, where the stall below does not arise the same way).
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class DirectConnection(http.client.HTTPConnection):
    """``http.client.HTTPConnection`` that counts the sockets it opens and ACKs the response at once.

    The delayed-ACK stall: a server that writes its status line and headers, then its body, as two small
    writes without ``TCP_NODELAY`` (Python's ``http.server`` with ``protocol_version = "HTTP/1.1"``)
    lets Nagle hold the body in its kernel until the header segment is acknowledged. On a kept-alive
    connection Linux treats the exchange as interactive and delays that ACK, hoping to piggyback it on our
    next request, which cannot come before the body: so each request waited for the client's delayed-ACK
    timer (``TCP_DELACK_MIN`` at least). Seen with strace: the server's ``sendto`` of the body returns at
    once, the client's ``recvfrom`` of it returns only when that timer fires, on every request but the
    first (a new connection starts in quick-ACK mode; urllib never reuses one, so it never stalls).
    Setting ``TCP_QUICKACK`` after the request is sent makes the kernel acknowledge the response's first
    segment immediately. The flag is not sticky (sending re-enters the delayed mode), hence once per
    request. The measurements are in bench/README.md, section HTTP.
    """

    response_class = DirectResponse
    home: object = None  # the _Pools this connection was made for (see _Pools)

    def connect(self) -> None:
        try:
            super().connect()
        except BaseException:
            counters.add(connect_failures=1)
            raise
        counters.add(connections_created=1)

    def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
        """Headers and a bytes body in one write (http.client makes two): one syscall and one segment less.

        Only exact ``bytes`` take this path; every other body goes through http.client's own code.
        """
        if type(message_body) is not bytes or encode_chunked:
            super()._send_output(message_body, encode_chunked)  # type: ignore[misc]
            return
        buffer: list[bytes] = self._buffer  # type: ignore[attr-defined]  # http.client's header lines
        buffer.extend((b"", b""))
        message = b"\r\n".join(buffer) + message_body
        del buffer[:]
        self.send(message)

    def acknowledge_promptly(self) -> None:
        """Call after sending a request: the response's first segment is ACKed without delay."""
        sock = self.sock
        if _QUICKACK is not None and sock is not None:
            # Not contextlib.suppress: this runs on every request, and a context manager costs more.
            try:  # noqa: SIM105
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass  # a socket type without it (not TCP): the request still works, it may only be slower


class DirectHTTPSConnection(DirectConnection, http.client.HTTPSConnection):
    """The TLS flavour: http.client's own handshake, hostname check and SNI, as with urllib."""


class _Pools:
    """Idle connections by key, least recently used key first. ``lock`` guards ``idle``; no I/O under it.

    ``dispose()`` and fork replace the whole object: a connection checked out before that belongs to the
    old one and is closed, not kept, when its response settles.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: OrderedDict[Key, list[DirectConnection]] = OrderedDict()


_pools = _Pools()


def checkout(key: Key, timeout: float | None, *, fresh: bool = False) -> tuple[DirectConnection, bool]:
    """A live idle connection for ``key`` (``reused`` True), or a new unconnected one if none or ``fresh``."""
    pools = _pools
    while not fresh:
        with pools.lock:
            idle = pools.idle.get(key)
            conn = idle.pop() if idle else None
        if conn is None:
            break
        sock = conn.sock
        if sock is not None and not _readable_now(sock):
            if sock.gettimeout() != timeout:  # settimeout() always costs a syscall (ioctl FIONBIO)
                conn.timeout = timeout
                sock.settimeout(timeout)
            return conn, True
        conn.close()  # the server hung up while it was idle (or sent bytes nobody asked for)
    new = _new_connection(key, timeout)
    new.home = pools
    return new, False


def checkin(key: Key, conn: DirectConnection, maxsize: int, num_pools: int) -> None:
    """Keep ``conn`` for the next call, unless it is closed, disposed of, or ``maxsize`` are idle."""
    pools = _pools
    closing: list[DirectConnection] = []
    if conn.sock is None or conn.home is not pools:  # closed by the server's announcement, or disposed
        closing.append(conn)
    else:
        with pools.lock:
            idle = pools.idle.get(key)
            if idle is None:
                idle = pools.idle[key] = []
            pools.idle.move_to_end(key)
            (idle if len(idle) < maxsize else closing).append(conn)
            while len(pools.idle) > num_pools:  # the least recently used host goes
                closing.extend(pools.idle.popitem(last=False)[1])
    for extra in closing:
        extra.close()


def _new_connection(key: Key, timeout: float | None) -> DirectConnection:
    scheme, host, port, context = key
    if scheme == "https":
        return DirectHTTPSConnection(host, port, timeout=timeout, context=context)
    return DirectConnection(host, port, timeout=timeout)


def _readable_now(sock: socket.socket) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])  # pragma: no cover - platforms without poll()


def pool_count() -> int:
    """Keys with idle connections kept (reported with urllib3's pools as ``pools``)."""
    with _pools.lock:
        return sum(1 for idle in _pools.idle.values() if idle)


def dispose() -> None:
    """Close every idle connection. Connections still reading a response are closed when it settles."""
    global _pools
    old, _pools = _pools, _Pools()
    with old.lock:
        idle = old.idle
    for connections in idle.values():
        for conn in connections:
            conn.close()


def _forget_after_fork() -> None:
    global _pools  # noqa: PLW0603 - replaced wholesale: the old lock may be held by a vanished thread
    _pools = _Pools()


os.register_at_fork(after_in_child=_forget_after_fork)
