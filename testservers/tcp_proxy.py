"""A TCP proxy on 127.0.0.1 that can freeze: a hung server or a stuck network appliance, on demand.

``FreezableProxy(upstream_port)`` accepts connections and forwards bytes both ways. ``freeze()`` stops
forwarding on every connection, old and new, while still accepting: clients see a peer that took their
bytes and never answers (no RST, no FIN), which no server-side timeout can bound. ``thaw()`` forwards
again. One selector thread serves every connection.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

HOST = "127.0.0.1"


class FreezableProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:upstream_port``; see the module docstring."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server((HOST, 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._frozen = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards _pairs
        self._pairs: dict[socket.socket, socket.socket] = {}
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, name="freezable-proxy", daemon=True)
        self._thread.start()

    def freeze(self) -> None:
        """Stop forwarding (bytes already received stay unread in the kernel buffers)."""
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            sockets = list(self._pairs)
            self._pairs.clear()
        for sock in sockets:
            sock.close()
        self._listener.close()

    def __enter__(self) -> FreezableProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept(selector)
                elif not self._frozen.is_set():
                    self._forward(selector, sock)
            if self._frozen.is_set():
                # Level-triggered readiness would spin: stop watching the connections until thawed.
                self._wait_while_frozen(selector)
        selector.close()

    def _wait_while_frozen(self, selector: selectors.BaseSelector) -> None:
        with self._lock:
            watched = list(self._pairs)
        for sock in watched:
            selector.unregister(sock)
        while self._frozen.is_set() and not self._stop.is_set():
            # Still accept (a frozen appliance completes TCP handshakes), never forward.
            for _key, _ in selector.select(timeout=0.05):
                self._accept(selector, watch=False)
        for sock in watched:
            with self._lock:
                alive = sock in self._pairs
            if alive:
                selector.register(sock, selectors.EVENT_READ)
        with self._lock:
            unwatched = [sock for sock in self._pairs if sock not in watched]
        for sock in unwatched:
            selector.register(sock, selectors.EVENT_READ)

    def _accept(self, selector: selectors.BaseSelector, *, watch: bool = True) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.accepted += 1
        upstream = socket.create_connection((HOST, self.upstream_port))
        with self._lock:
            self._pairs[client] = upstream
            self._pairs[upstream] = client
        if watch:
            selector.register(client, selectors.EVENT_READ)
            selector.register(upstream, selectors.EVENT_READ)

    def _forward(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        with self._lock:
            peer = self._pairs.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        self._drop(selector, sock, peer)

    def _drop(self, selector: selectors.BaseSelector, sock: socket.socket, peer: socket.socket) -> None:
        with self._lock:
            self._pairs.pop(sock, None)
            self._pairs.pop(peer, None)
        for each in (sock, peer):
            with contextlib.suppress(KeyError, ValueError):
                selector.unregister(each)
            each.close()
