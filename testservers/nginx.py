"""A throwaway nginx on 127.0.0.1 for benchmarks: a fast, production-grade keep-alive HTTP server.

Against the Python test server (testservers.http) every request costs a few hundred microseconds of
server-side Python, which hides what a client saves by keeping connections alive. nginx answers a small
static file in a few microseconds, so connection setup is what dominates a connect-per-call client's cost,
as it does against real production servers.

Each server gets its own prefix directory in a temp folder (config, pid file, logs, temp paths, document
root), a free port on 127.0.0.1 (another one if something takes it before nginx binds it:
testservers.ports) and ``daemon off`` so it stays this process's child; nothing under /etc/nginx or /var is
read or written. The static files are the ones testservers.http serves under the same paths
(``/bytes/<n>``), byte for byte, so a benchmark can point the same client code at either server.

Needs the nginx binary (Debian package ``nginx-light``); :class:`NginxUnavailable` says so when it is
missing, so callers can skip cleanly.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from testservers.binaries import find_binary, stop_process
from testservers.http import HOST, Certificates, pattern
from testservers.ports import PortTaken, port_taken, start_on_free_port

#: Sizes of the static files served at ``/bytes/<n>``.
DEFAULT_SIZES = (0, 512, 4096, 65536)
START_TIMEOUT = 10.0  # seconds for nginx to accept connections after launch
STOP_TIMEOUT = 10.0  # seconds for a graceful stop before SIGKILL


class NginxUnavailable(RuntimeError):
    """No nginx binary on this machine."""


def find_nginx() -> Path:
    """``$NGINX_BIN``, else ``nginx`` on PATH, else Debian's ``/usr/sbin/nginx`` (not on a user's PATH)."""
    return find_binary("nginx", "NGINX_BIN", "nginx-light", NginxUnavailable)


@dataclass
class NginxServer:
    """One running nginx. Use :func:`start_nginx` (a context manager) or :func:`launch_nginx` + ``stop()``."""

    host: str
    port: int
    prefix: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    tls: bool = False

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    def version(self) -> str:
        """``nginx/1.22.1``-style version string of the running binary (for result documents)."""
        result = subprocess.run(
            [str(find_nginx()), "-v"], capture_output=True, text=True, check=False, timeout=10
        )
        return (result.stderr or result.stdout).strip().removeprefix("nginx version: ")

    def stop(self) -> None:
        # SIGQUIT is nginx's graceful shutdown: finish in-flight requests, close idle keep-alive ones.
        stop_process(self.process, signal.SIGQUIT, STOP_TIMEOUT)
        shutil.rmtree(self.prefix, ignore_errors=True)


def render_config(prefix: Path, port: int, tls: Certificates | None = None) -> str:
    """The whole configuration: nothing is inherited from /etc/nginx (no modules, no default site)."""
    temp = prefix / "temp"
    listen = f"{HOST}:{port}"
    if tls is not None:
        listen += f" ssl;\n        ssl_certificate {tls.cert_pem};\n        ssl_certificate_key {tls.key_pem}"
    return f"""\
daemon off;
# One worker: the benchmark client is single-threaded, and the machine has 2 cores to share with it.
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    default_type application/octet-stream;
    # Keep-alive like a production server, but never closing a benchmark's connection mid-run.
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    tcp_nodelay on;
    sendfile on;
    server_tokens off;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;

    server {{
        listen {listen};
        server_name localhost;
        root {prefix}/www;
        # /bytes/<n> has no extension: serve it as testservers.http does.
        location /bytes/ {{
            default_type application/octet-stream;
        }}
    }}
}}
"""


def write_site(prefix: Path, sizes: tuple[int, ...]) -> None:
    """The document root, world-readable: as root, nginx's worker runs as ``nobody``."""
    www = prefix / "www"
    (www / "bytes").mkdir(parents=True)
    for size in sizes:
        (www / "bytes" / str(size)).write_bytes(pattern(size))
    (prefix / "temp").mkdir()
    for directory in (prefix, www, www / "bytes"):
        directory.chmod(0o755)
    for size in sizes:
        (www / "bytes" / str(size)).chmod(0o644)


def launch_nginx(sizes: tuple[int, ...] = DEFAULT_SIZES, *, tls: Certificates | None = None) -> NginxServer:
    """Start a new nginx serving ``/bytes/<n>`` for each of ``sizes``; the caller must call ``stop()``.

    With ``tls`` (from :func:`testservers.http.make_certificates`) it speaks HTTPS with that certificate;
    the key file must be readable by the user nginx starts as (it reads it before dropping privileges).
    """
    binary = find_nginx()
    return start_on_free_port(lambda port: _launch(binary, sizes, tls, port))


def _launch(binary: Path, sizes: tuple[int, ...], tls: Certificates | None, port: int) -> NginxServer:
    """One attempt: nginx on ``port``, accepting connections; on failure nothing is left running or kept."""
    prefix = Path(tempfile.mkdtemp(prefix="poolshift-nginx-"))
    try:
        write_site(prefix, sizes)
        config = prefix / "nginx.conf"
        config.write_text(render_config(prefix, port, tls))
        log = open(prefix / "stderr.log", "wb")  # noqa: SIM115 - handed to the child, closed below
        with log:
            # -e: the startup error log, which otherwise defaults to /var/log/nginx/error.log.
            process = subprocess.Popen(
                [str(binary), "-p", str(prefix), "-c", str(config), "-e", str(prefix / "error.log")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
    except BaseException:
        shutil.rmtree(prefix, ignore_errors=True)
        raise
    server = NginxServer(HOST, port, prefix, process, tls=tls is not None)
    try:
        _wait_ready(server, time.monotonic() + START_TIMEOUT)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: NginxServer, deadline: float) -> None:
    """Until nginx has bound its port and accepts connections; fail fast (with its own words) if it exits.

    A connection alone proves nothing while nginx may still fail to bind: whatever took the port meanwhile
    would answer it. nginx writes its pid file only once its listening sockets are open.
    """
    pid_file = server.prefix / "nginx.pid"
    while True:
        if server.process.poll() is not None:
            logs = _logs(server.prefix)
            error = PortTaken if port_taken(logs) else RuntimeError
            raise error(f"nginx exited with {server.process.returncode}:\n{logs}")
        try:
            if not pid_file.exists():
                raise ConnectionRefusedError("nginx has not bound its port yet")
            with socket.create_connection((server.host, server.port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nginx did not accept connections in time:\n{_logs(server.prefix)}"
                ) from None
            time.sleep(0.02)


def _logs(prefix: Path) -> str:
    parts = []
    for name in ("stderr.log", "error.log"):
        path = prefix / name
        if path.exists():
            parts.append(path.read_text(errors="replace"))
    return "\n".join(parts)


@contextlib.contextmanager
def start_nginx(
    sizes: tuple[int, ...] = DEFAULT_SIZES, *, tls: Certificates | None = None
) -> Iterator[NginxServer]:
    server = launch_nginx(sizes, tls=tls)
    try:
        yield server
    finally:
        server.stop()
