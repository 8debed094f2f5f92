"""A TCP proxy on 127.0.0.1 that holds each new connection until the test lets it through.

Connection attempts then stay "in flight" for as long as a test needs to look at them: how many a pool
runs at once is ``held`` (the pool cannot know the proxy is not the server), with no timing involved.
``release(n)`` lets the oldest ``n`` held connections through, ``open()`` lets every connection through
from now on (until ``hold()``), ``refuse()`` closes every new (and held) connection at once, like a
server that is down.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType

HOST = "127.0.0.1"


class HoldingProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:upstream_port`` once a connection is released."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._changed = threading.Condition()  # guards every field below; notified on each change
        self._held: deque[socket.socket] = deque()
        self._mode = "hold"  # "hold", "open" or "refuse"
        self._closing = False
        self.accepted = 0
        self.max_held = 0
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept_loop, name="holding-proxy", daemon=True).start()

    @property
    def held(self) -> int:
        with self._changed:
            return len(self._held)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Block until ``predicate()`` (evaluated with the proxy's lock held) is true, or fail."""
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise AssertionError("the proxy never reached the expected state")

    def release(self, count: int = 1) -> None:
        with self._changed:
            released = [self._held.popleft() for _ in range(min(count, len(self._held)))]
            self._changed.notify_all()
        for client in released:
            self._forward(client)

    def hold(self) -> None:
        """Hold new connections again (the mode a proxy starts in)."""
        with self._changed:
            self._mode = "hold"

    def open(self) -> None:
        self._set_mode("open")

    def refuse(self) -> None:
        self._set_mode("refuse")

    def _set_mode(self, mode: str) -> None:
        with self._changed:
            self._mode = mode
            waiting, self._held = list(self._held), deque()
            self._changed.notify_all()
        for client in waiting:
            self._dispatch(client, mode)

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._changed:
                self.accepted += 1
                self._sockets.append(client)
                mode = self._mode
                if mode == "hold":
                    self._held.append(client)
                    self.max_held = max(self.max_held, len(self._held))
                self._changed.notify_all()
            if mode != "hold":
                self._dispatch(client, mode)

    def _dispatch(self, client: socket.socket, mode: str) -> None:
        if mode == "refuse":
            client.close()
        else:
            self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((HOST, self.upstream_port))
        except OSError:
            client.close()
            return
        with self._changed:
            self._sockets.append(upstream)
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(source, target), daemon=True).start()

    def close(self) -> None:
        self._listener.close()
        with self._changed:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> HoldingProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes one way until either side closes; then close both so the other pump ends too."""
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
