"""Real HTTP/1.1 keep-alive servers on 127.0.0.1 for tests and benchmarks.

One handler serves every endpoint the HTTP tests need; the server counts accepted TCP connections and
connections it closed, records every request it read, and can close idle connections, speak TLS with a
certificate made on the spot (see :func:`make_certificates`), or leave Nagle's algorithm on
(``nodelay=False``, as Python's own ``http.server`` does).

Endpoints (any method):
    /echo                    JSON: method, path, headers (ordered pairs), body, conn_id, request_no
    /status/<code>           that status, body ``status <code>`` (none for 204/304)
    /redirect/<code>?to=URL  redirect with that code to URL (default /echo)
    /chain/<n>               302 to /chain/<n-1>; /chain/0 answers like /echo
    /loop                    302 to itself
    /slow                    waits for ``server.release`` before answering (``server.arrived`` set first)
    /slow-body               sends headers, waits for ``server.release``, then the 10-byte body
    /bytes/<n>               n bytes (Content-Length)
    /chunked/<n>?size=k      n bytes, chunked transfer encoding in k-byte chunks
    /lines/<n>               n lines ``line <i>\\n``
    /close-after             answers (keep-alive advertised), then closes the connection
    /drop-if-reused          closes without answering unless this is the connection's first request
    /dup-headers             two Set-Cookie headers
An absolute request target (a client using this server as its proxy) is answered like /echo.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
SLOW_WAIT_LIMIT = 10.0  # seconds a slow endpoint waits for the test's release before giving up


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: bytes
    conn_id: int
    request_no: int


@dataclass
class ServerCounters:
    """Connection and request bookkeeping, guarded by ``cond`` (tests wait on it instead of sleeping)."""

    accepted: int = 0
    closed: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)


class PoolTestServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer on 127.0.0.1 that counts connections; optionally TLS, optionally idle-closing."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # socketserver's 5 resets connections when 32 client threads connect at once

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        idle_timeout: float | None = None,
        nodelay: bool = True,
    ) -> None:
        super().__init__((HOST, 0), PoolTestHandler)
        self.tls = tls
        self.idle_timeout = idle_timeout
        self.nodelay = nodelay
        self.counters = ServerCounters()
        self.release = threading.Event()
        self.arrived = threading.Event()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.02}, name="pool-test-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{HOST}:{self.port}"

    def start(self) -> PoolTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()  # free handler threads parked on slow endpoints
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    # -- counting ------------------------------------------------------------------------------------
    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        # Like production servers: without it, Nagle holds the body back until the client acknowledges the
        # headers, which go out as a separate write (end_headers, then the body). nodelay=False is
        # http.server's own configuration, the one a new user's keep-alive server has (see
        # db_utils/http/keepalive.py for what the client does about it).
        if self.nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            # Handshake lazily in the handler thread, so a client that never handshakes can't stall accept().
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.counters.cond:
            self.counters.accepted += 1
            self.counters.cond.notify_all()
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self.counters.cond:
            self.counters.closed += 1
            self.counters.cond.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed TLS handshakes and clients that hang up are expected in these tests; keep them quiet but
        # inspectable.
        import sys

        error = sys.exc_info()[1]
        if error is not None:
            self.errors.append(error)

    def record(self, request: RecordedRequest) -> None:
        with self.counters.cond:
            self.counters.requests.append(request)
            self.counters.cond.notify_all()

    # -- queries for tests -----------------------------------------------------------------------------
    @property
    def connections_accepted(self) -> int:
        with self.counters.cond:
            return self.counters.accepted

    def requests_for(self, path: str) -> list[RecordedRequest]:
        with self.counters.cond:
            return [r for r in self.counters.requests if urlsplit(r.path).path == path]

    def wait_closed(self, count: int, timeout: float = 30.0) -> bool:
        """Block until the server has closed at least ``count`` connections in total (False: not in time).

        An event, not a sleep: the generous bound costs nothing when the close comes, and a loaded machine
        can delay a server thread by seconds.
        """
        with self.counters.cond:
            return self.counters.cond.wait_for(lambda: self.counters.closed >= count, timeout)


class PoolTestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the whole point of these servers
    server: PoolTestServer
    _next_conn_id = 0
    _conn_id_lock = threading.Lock()  # guards the class-wide connection id counter

    def setup(self) -> None:
        super().setup()
        # Blocking until the first request has been served. An accepted socket inherits
        # socket.getdefaulttimeout(), which some tests set very short for the *client*; and a client that a
        # busy machine slows between connect and send is not idle (see handle_one_request).
        self.connection.settimeout(None)
        with PoolTestHandler._conn_id_lock:
            PoolTestHandler._next_conn_id += 1
            self.conn_id = PoolTestHandler._next_conn_id
        self.request_no = 0

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    def handle_one_request(self) -> None:
        self.request_no += 1
        if self.request_no > 1 and self.server.idle_timeout is not None:
            # Idle = no next request within idle_timeout after an answer (what production servers close).
            self.connection.settimeout(self.server.idle_timeout)
        super().handle_one_request()

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler dispatches to do_<METHOD>; every method goes to the same router.
        if name.startswith("do_"):
            return self.route
        raise AttributeError(name)

    # -- routing -------------------------------------------------------------------------------------
    def route(self) -> None:
        body = self.read_body()
        self.server.record(RecordedRequest(self.command, self.path, body, self.conn_id, self.request_no))
        parts = urlsplit(self.path)
        if parts.scheme:  # absolute target: we are somebody's proxy
            return self.echo(body, proxied=True)
        segments = parts.path.strip("/").split("/")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        handler = getattr(self, "ep_" + segments[0].replace("-", "_"), None)
        if handler is None:
            return self.respond(404, b"no such endpoint")
        return handler(segments[1:], query, body)  # type: ignore[no-any-return]

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def respond(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if code not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if code not in (204, 304) and self.command != "HEAD":
            self.wfile.write(body)

    def echo(self, body: bytes, *, proxied: bool = False) -> None:
        payload = {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
            "conn_id": self.conn_id,
            "request_no": self.request_no,
            "proxied": proxied,
        }
        self.respond(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    # -- endpoints -----------------------------------------------------------------------------------
    def ep_echo(self, args: list[str], query: dict[str, str], body: bytes) -> None:
        self.echo(body)

    def ep_status(self, args: list[str], query: dict[str, str], body: bytes) -> None:
        code = int(args[0])
        self.respond(code, f"status {code}".encode(), {"X-Status": str(code)})

    def ep_redirect(self, args: list[str], query: dict[str, str], body: bytes) -> None:
        self.respond(int(args[0]), b"redirecting", {"Location": query.get("to", "/echo")})

    def ep_chain(self, args: list[str], query: dict[str, str], body: bytes) -> None:
        remaining = int(args[0])
        if remaining == 0:
            return self.echo(body)
        return self.respond(302, b"next", {"Location": f"/chain/{remaining - 1}"})

    def ep_loop(self, args: list[str], query: dict[str, str], body: bytes) -> None:
        self.respond(302, b"again", {"Location": "/loop"})

    def ep_slow(self, args: list[str], query: dict[str, str], body: bytes) -> None:
        self.server.arrived.set()
        self.server.release.wait(SLOW_WAIT_LIMIT)
        self.respond(200, b"finally")

    def ep_slow_body(self, args: list[str], query: dict[str, str], body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "10")
        self.end_headers()
        self.wfile.flush()
        self.server.arrived.set()
        self.server.release.wait(SLOW_WAIT_LIMIT)
        self.wfile.write(b"0123456789")

    def ep_bytes(self, args: list[str], query: dict[str, str], body: bytes) -> None:
        self.respond(200, pattern(int(args[0])), {"Content-Type": "application/octet-stream"})

    def ep_chunked(self, args: list[str], query: dict[str, str], body: bytes) -> None:
        data, size = pattern(int(args[0])), int(query.get("size", "1000"))
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(data), size):
            chunk = data[start : start + size]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def ep_lines(self, args: list[str], query: dict[str, str], body: bytes) -> None:
        text = "".join(f"line {i}\n" for i in range(int(args[0])))
        self.respond(200, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})

    def ep_close_after(self, args: list[str], query: dict[str, str], body: bytes) -> None:
        self.respond(200, b"closing silently")
        self.close_connection = True  # no "Connection: close" header: the client believes it can reuse

    def ep_drop_if_reused(self, args: list[str], query: dict[str, str], body: bytes) -> None:
        if self.request_no > 1:
            self.close_connection = True  # hang up without a status line, like an idle timeout racing us
            return
        self.echo(body)

    def ep_dup_headers(self, args: list[str], query: dict[str, str], body: bytes) -> None:
        self.send_response(200)
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def pattern(size: int) -> bytes:
    """Deterministic, non-repeating-looking bytes: a misaligned read shows up as a mismatch."""
    block = bytes(range(251))  # prime length, so offsets never line up with power-of-two buffers
    return (block * (size // len(block) + 1))[:size]


# -- certificates --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Certificates:
    ca_pem: Path
    cert_pem: Path
    key_pem: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_pem, self.key_pem)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context trusting only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca_pem))


def make_certificates(directory: Path, *, hostnames: tuple[str, ...] = (HOST,)) -> Certificates:
    """A throwaway CA and a server certificate it signed for ``hostnames`` (IPs or DNS names)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "poolshift test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    certs = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    certs.ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certs


# -- comparing the pool with urllib ------------------------------------------------------------------------
def outcome(opener: Any, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """What a caller observes from ``opener(*args, **kwargs)``, comparable between urllib and the pool.

    Echo bodies are normalized: the connection id, the per-connection request number and the
    ``Connection`` header are the only things allowed to differ between a pooled and an unpooled call.
    """
    import urllib.error

    try:
        with opener(*args, **kwargs) as response:
            return ("ok", response.status, response.reason, response.geturl(), _normalize(response.read()))
    except urllib.error.HTTPError as error:
        return ("HTTPError", error.code, error.reason, error.geturl(), _normalize(error.read()), str(error))
    except urllib.error.URLError as error:
        return ("URLError", type(error.reason), str(error.reason))
    except Exception as error:  # the exception *is* the observable outcome
        return ("raised", type(error), str(error))


def _normalize(body: bytes) -> Any:
    try:
        payload = json.loads(body)
    except ValueError:
        return body
    if isinstance(payload, dict) and "headers" in payload:
        payload.pop("conn_id", None)
        payload.pop("request_no", None)
        payload["headers"] = [h for h in payload["headers"] if h[0].lower() != "connection"]
    return payload
