"""Real servers and real load for the monitoring tests.

The servers run inside the test process (the monitor reports *this* process's pools, so it must be served
where the pools are): wsgiref in a thread, uvicorn in a thread on a socket the test bound itself. The
client is urllib, bypassing any proxy, returning error statuses as values. :class:`PostgresLoad` holds
pooled connections from worker threads, each having run a query, until released.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

import db_utils

HOST = "127.0.0.1"
STARTUP_DEADLINE = 60.0  # generous: a loaded 2-core machine may be slow to schedule the server thread
CLIENT_TIMEOUT = 60.0


def require(module: str) -> ModuleType:
    """Import ``module``; skip without it, except in CI, where the suite must prove what it claims."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{module} is required in CI (pip install -e '.[dev]')", pytrace=False)
        pytest.skip(f"{module} is not installed")


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(url: str, *, method: str = "GET", token: str | None = None, scheme: str = "Bearer") -> Response:
    """One HTTP request with urllib; 4xx/5xx come back as a Response, not an exception."""
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=CLIENT_TIMEOUT) as response:
            return Response(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, dict(error.headers.items()), error.read())


class _RecordingHandler(WSGIRequestHandler):
    """wsgiref's handler, with its per-request log lines kept (tests check what a server would log)."""

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log_lines.append(format % args)  # type: ignore[attr-defined]


class _RecordingServer(WSGIServer):
    log_lines: list[str]


@contextlib.contextmanager
def wsgi_server(app: Any) -> Iterator[tuple[str, list[str]]]:
    """Serve ``app`` with wsgiref on a free port; yields (base URL, request log lines)."""
    server = make_server(HOST, 0, app, server_class=_RecordingServer, handler_class=_RecordingHandler)
    server.log_lines = []
    thread = threading.Thread(target=server.serve_forever, name="monitor-wsgi", daemon=True)
    thread.start()  # the socket already listens: requests queue until the thread accepts them
    try:
        yield f"http://{HOST}:{server.server_port}", server.log_lines
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STARTUP_DEADLINE)


class _LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def uvicorn_server(app: Any, *, root_path: str = "") -> Iterator[tuple[str, list[str]]]:
    """Serve ``app`` with uvicorn (lifespan on) on a free port; yields (base URL, uvicorn's log lines)."""
    uvicorn = require("uvicorn")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", root_path=root_path, log_config=None, access_log=True)
    server = uvicorn.Server(config)
    captured = _LogLines()
    loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    for logger in loggers:
        logger.addHandler(captured)
        logger.setLevel(logging.DEBUG)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="monitor-asgi", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not server.started:  # readiness, polled with a deadline
            assert thread.is_alive(), f"uvicorn stopped during startup: {captured.lines}"
            assert time.monotonic() < deadline, f"uvicorn not ready after {STARTUP_DEADLINE} s"
            time.sleep(0.01)
        yield f"http://{HOST}:{port}", captured.lines
    finally:
        server.should_exit = True
        thread.join(STARTUP_DEADLINE)
        sock.close()
        for logger in loggers:
            logger.removeHandler(captured)
        assert not thread.is_alive(), "uvicorn did not stop"


class PostgresLoad:
    """``workers`` threads, each holding a pooled connection (after a query) until :meth:`release`."""

    def __init__(self, workers: int, url: str | None = None) -> None:
        self._holding = threading.Semaphore(0)
        self._released = threading.Event()
        self._errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._work, args=(url,), name=f"load-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()
        for _ in self._threads:  # every worker holds its connection before the test looks
            assert self._holding.acquire(timeout=STARTUP_DEADLINE), f"workers not holding: {self._errors}"
        assert not self._errors, self._errors

    def _work(self, url: str | None) -> None:
        try:
            with db_utils.get_pooled_connection(url) as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                cur.fetchone()
                self._holding.release()
                self._released.wait()
        except BaseException as error:
            self._errors.append(error)
            self._holding.release()
            raise

    def release(self) -> None:
        """Let every worker return its connection, and wait until all have."""
        self._released.set()
        for thread in self._threads:
            thread.join(STARTUP_DEADLINE)
        assert not any(thread.is_alive() for thread in self._threads), "a worker did not finish"
        assert not self._errors, self._errors
