"""A real local stand-in for the catalogue service: JSON over HTTP/1.1 on 127.0.0.1.

It speaks keep-alive properly (``protocol_version = "HTTP/1.1"``, a Content-Length on every response and
the request body always consumed), so a pooling client can reuse its connections and the tests see what
a real service would do. Tests steer it through :class:`CatalogueState`.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_PRODUCTS = {
    "TEA-1": {"sku": "TEA-1", "name": "Green tea", "price_cents": 450},
    "MUG-2": {"sku": "MUG-2", "name": "Enamel mug", "price_cents": 1200},
    "POT-3": {"sku": "POT-3", "name": "Teapot", "price_cents": 3500},
}

# How long a slow endpoint waits for the test to release it at most, so a forgotten release cannot hang
# the server thread forever. Tests never wait for this: their clients time out much earlier.
SLOW_LIMIT_SECONDS = 30


class CatalogueState:
    """Everything the service knows, and everything it saw. Guarded by ``lock`` because the server
    answers each connection on its own thread while the test thread reads and changes the state."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.release_slow = threading.Event()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.products: dict[str, dict[str, Any]] = copy.deepcopy(DEFAULT_PRODUCTS)
            self.price_list: list[dict[str, Any]] = [dict(p) for p in DEFAULT_PRODUCTS.values()]
            self.prices_status = 200
            self.products_status = 200
            self.events: list[Any] = []
            self.requests: list[dict[str, Any]] = []
            # Wake any handler still parked on the previous test's event, then start afresh.
            self.release_slow.set()
            self.release_slow = threading.Event()

    def record(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self.lock:
            self.requests.append({"method": method, "path": path, "headers": headers})


class CatalogueHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CatalogueServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base class
        """Silence the per-request stderr log."""

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _slow(self, *, headers_first: bool) -> None:
        """Answer only when the test releases us: before the headers (``/slow``) or mid-body."""
        # Read once: reset() swaps in a new event, and this handler must wait on the one of its test.
        release = self.server.state.release_slow
        body = json.dumps({"status": "finally"}).encode("utf-8")
        try:
            if headers_first:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:5])
                self.wfile.flush()
                release.wait(SLOW_LIMIT_SECONDS)
                self.wfile.write(body[5:])
            else:
                release.wait(SLOW_LIMIT_SECONDS)
                self._send_json(200, {"status": "finally"})
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up long ago, which is the point of this endpoint.
            self.close_connection = True

    def do_GET(self) -> None:
        state = self.server.state
        self._read_body()
        state.record("GET", self.path, dict(self.headers.items()))
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._send_json(200, {"status": "ok"})
        elif path.startswith("/products/"):
            with state.lock:
                status = state.products_status
                product = copy.deepcopy(state.products.get(path[len("/products/") :]))
            if status != 200:
                self._send_json(status, {"error": "catalogue exploded"})
            elif product is None:
                self._send_json(404, {"error": "no such product"})
            else:
                self._send_json(200, product)
        elif path == "/prices":
            with state.lock:
                status, prices = state.prices_status, copy.deepcopy(state.price_list)
            if status != 200:
                self._send_json(status, {"error": "price list unavailable"})
            else:
                self._send_json(200, {"prices": prices})
        elif path == "/echo":
            self._send_json(200, {"headers": dict(self.headers.items())})
        elif path == "/slow":
            self._slow(headers_first=False)
        elif path == "/slow-body":
            self._slow(headers_first=True)
        else:
            self._send_json(404, {"error": "no route"})

    def do_POST(self) -> None:
        state = self.server.state
        raw = self._read_body()
        state.record("POST", self.path, dict(self.headers.items()))
        if self.path != "/events":
            self._send_json(404, {"error": "no route"})
            return
        try:
            event = json.loads(raw)
        except ValueError:
            self._send_json(400, {"error": "body is not JSON"})
            return
        with state.lock:
            state.events.append(event)
            event_id = len(state.events)
        self._send_json(201, {"id": event_id, "received": event})


class CatalogueServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.state = CatalogueState()
        super().__init__(("127.0.0.1", 0), CatalogueHandler)

    @property
    def url(self) -> str:
        port = self.server_address[1]
        return f"http://127.0.0.1:{port}"


class FakeCatalogue:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` and ``state`` in between."""

    def __init__(self) -> None:
        self.server = CatalogueServer()
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-catalogue", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def state(self) -> CatalogueState:
        return self.server.state

    def start(self) -> FakeCatalogue:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.state.release_slow.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released): a service that is down."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
