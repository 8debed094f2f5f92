"""pytest fixtures for the local HTTP servers (see testservers/http.py).

Servers are per test (starting one takes about a millisecond) so connection counts start from zero.
``fresh_http_pool`` empties db_utils.http's pools around a test, so a connection kept alive by an earlier
test (to a server that no longer exists) can never be counted or reused.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testservers.http import Certificates, PoolTestServer, make_certificates


@pytest.fixture
def http_server_factory() -> Iterator[Callable[..., PoolTestServer]]:
    """Start servers with options (``tls=``, ``idle_timeout=``, ``nodelay=``); all stopped after the test."""
    started: list[PoolTestServer] = []

    def factory(**options: Any) -> PoolTestServer:
        server = PoolTestServer(**options).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def http_server(http_server_factory: Callable[..., PoolTestServer]) -> PoolTestServer:
    """A plain HTTP/1.1 keep-alive server on 127.0.0.1."""
    return http_server_factory()


@pytest.fixture
def http_server_nagle(http_server_factory: Callable[..., PoolTestServer]) -> PoolTestServer:
    """Python's http.server as a new user configures it: HTTP/1.1 keep-alive, no ``TCP_NODELAY``.

    It writes the headers and the body as two writes, the second of which Nagle holds back until the
    client acknowledges the first: the configuration of the delayed-ACK stall.
    """
    return http_server_factory(nodelay=False)


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA and a certificate for 127.0.0.1 it signed."""
    return make_certificates(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def https_server(
    http_server_factory: Callable[..., PoolTestServer], tls_certs: Certificates
) -> PoolTestServer:
    """The same server speaking TLS with ``tls_certs``."""
    return http_server_factory(tls=tls_certs.server_context())


@pytest.fixture
def fresh_http_pool(clean_env: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """db_utils.http with empty pools and settings re-read from a clean environment (no proxies either)."""
    import db_utils.http

    for name in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "no_proxy",
        "NO_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        clean_env.delenv(name, raising=False)
    # urllib keeps the opener it builds on first use (with the proxies of that moment) in a module global;
    # reset it so one test's urllib call cannot change how the next test's calls are routed.
    urllib.request.install_opener(None)
    db_utils.http.dispose()
    yield clean_env
    db_utils.http.dispose()
    urllib.request.install_opener(None)
