"""The direct path: a prepared urllib ``Request`` sent over a kept-alive ``http.client`` connection.

urllib's ``do_open`` builds an ``http.client`` connection per call, sends ``Connection: close`` and drops
the connection. :func:`send` does what ``do_open`` does, step for step, on a connection from
:mod:`db_utils.http.keepalive` that outlives the call: the same ``http.client`` request (headers, body
framing, chunked encoding), the same exceptions (an ``OSError`` while sending becomes ``URLError(err)``,
anything raised while waiting for the response comes out unchanged), and the response is the
``http.client.HTTPResponse`` urllib would return (a subclass that hands the connection back).

A request that went out on a *reused* connection the server had closed (the write fails, or the status
line never comes) is sent once more on a new connection, if its method is idempotent and its body can be
sent again; a new connection's failure is the caller's, as with urllib.

The helpers shared with the urllib3 transport (transport.py, the path for everything :func:`why_not_direct`
names) live here, so that imports go one way.
"""

from __future__ import annotations

import functools
import http.client
import socket
import ssl
import types
import urllib.error
import urllib.request
from typing import Any

from db_utils.http import keepalive
from db_utils.http.manager import HttpPoolSettings, current_settings, default_tls_context
from db_utils.http.response import DirectResponse
from db_utils.http.wire import counters

# RFC 9110 idempotent methods, urllib3's Retry.DEFAULT_ALLOWED_METHODS: only these may be sent twice.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# The methods the direct path sends; any other (CONNECT, WebDAV's PROPFIND, PURGE...) goes through urllib's
# opener and urllib3, which have always handled them.
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"})

# What a kept-alive socket closed by the server looks like: the write fails, or the response never comes.
# Timeouts are deliberately absent: a slow server is not a dead connection, and resending would double
# the wait the caller asked for.
DEAD_SOCKET_ERRORS = (ConnectionError, http.client.RemoteDisconnected, ssl.SSLEOFError)


def why_not_direct(request: urllib.request.Request, method: str, settings: HttpPoolSettings) -> str | None:
    """``None`` when the direct path sends ``request`` (``method``: its ``get_method()``), else why urllib's
    opener must (a stats key).

    Called for requests the pool serves at all (route.py has ruled out other schemes, installed openers,
    environment proxies and ``cafile``).
    """
    if settings.block:
        return "block"  # HTTP_POOL_BLOCK's wait for a free connection is urllib3's
    if method not in STANDARD_METHODS:
        return "method"
    if request.has_proxy():
        return "request-proxy"  # Request.set_proxy() was called on it
    if _OPENER_CLASS.open is not _STOCK_OPEN or _OPENER_CLASS._open is not _STOCK_DISPATCH:  # type: ignore[attr-defined]
        return "opener-patched"
    return None


# The direct path does what OpenerDirector.open and _open do, without calling them: a method replaced on
# the class (a test's mock, instrumentation wrapping it) would never see the call, so the opener sends it.
_OPENER_CLASS = urllib.request.OpenerDirector
_STOCK_OPEN = _OPENER_CLASS.open
_STOCK_DISPATCH = _OPENER_CLASS._open  # type: ignore[attr-defined]


def send(
    request: urllib.request.Request,
    scheme: str,
    context: ssl.SSLContext | None,
    method: str | None = None,
) -> DirectResponse:
    """Send ``request`` (already through urllib's ``do_request_``) and return its response.

    ``method`` is ``request.get_method()``, when the caller has it already.
    """
    host, port = split_host_port(request.host, scheme)
    tls = (context if context is not None else default_tls_context()) if scheme == "https" else None
    key: keepalive.Key = (scheme, host, port, tls)
    if method is None:
        method = request.get_method()
    headers = wire_headers(request)
    body = request.data
    chunked = request.has_header("Transfer-encoding")
    timeout = resolve_timeout(request.timeout)
    for attempt in (1, 2):
        conn, reused = keepalive.checkout(key, timeout, fresh=attempt == 2)
        counters.add(requests=1, reuses=int(reused))
        try:
            try:
                conn.request(method, request.selector, body, headers, encode_chunked=chunked)
            except OSError as err:
                if _may_resend(attempt, reused, err, method, body):
                    conn.close()
                    counters.add(stale_retries=1)
                    continue
                raise urllib.error.URLError(err)  # noqa: B904 - chained implicitly, as in urllib's do_open
            conn.acknowledge_promptly()
            try:
                raw = conn.getresponse()
            except Exception as err:
                if _may_resend(attempt, reused, err, method, body):
                    conn.close()
                    counters.add(stale_retries=1)
                    continue
                raise
        except BaseException:
            conn.close()
            raise
        return _settled_response(raw, request, key, conn)
    raise AssertionError("unreachable: the second attempt returns or raises")  # pragma: no cover


def _settled_response(
    raw: http.client.HTTPResponse,
    request: urllib.request.Request,
    key: keepalive.Key,
    conn: keepalive.DirectConnection,
) -> DirectResponse:
    """Set up ``raw`` as urllib's ``do_open`` does, and to hand ``conn`` back once its body is read."""
    response: DirectResponse = raw  # type: ignore[assignment]  # the connection's response_class
    settings = current_settings()
    response.release = functools.partial(_release, key, conn, settings.maxsize, settings.num_pools)
    response.url = request.get_full_url()
    response.msg = response.reason  # type: ignore[assignment]  # what do_open does: .msg is the reason
    if response.length == 0 and not response.chunked:  # HEAD, 204, 304, an empty body: nothing to read
        response.read()  # lets http.client mark the end now, and the connection go back at once
    return response


def _may_resend(attempt: int, reused: bool, error: Exception, method: str, body: Any) -> bool:
    replayable = body is None or isinstance(body, (bytes, bytearray, memoryview))
    return (
        attempt == 1
        and reused
        and method in IDEMPOTENT_METHODS
        and replayable
        and isinstance(error, DEAD_SOCKET_ERRORS)
    )


def _release(
    key: keepalive.Key, conn: keepalive.DirectConnection, maxsize: int, num_pools: int, reusable: bool
) -> None:
    if reusable:
        keepalive.checkin(key, conn, maxsize, num_pools)
    else:
        conn.close()


@functools.lru_cache(maxsize=256)
def split_host_port(host: str, scheme: str) -> tuple[str, int]:
    """``host[:port]`` parsed exactly as http.client parses it (IPv6 brackets, empty port, bad port).

    Cached: a service calls the same few hosts over and over (a bad port raises, and is not cached).
    """
    default_port = http.client.HTTPS_PORT if scheme == "https" else http.client.HTTP_PORT
    # _get_hostport only reads self.default_port; reusing it keeps urllib's InvalidURL messages.
    parsed: tuple[str, int] = http.client.HTTPConnection._get_hostport(  # type: ignore[attr-defined]
        types.SimpleNamespace(default_port=default_port), host, None
    )
    return parsed


def wire_headers(request: urllib.request.Request) -> dict[str, str]:
    """The header dict urllib's ``do_open`` sends, without its forced ``Connection: close``."""
    headers = request.unredirected_hdrs
    if request.headers:  # else, the common case, no merged copy is needed
        headers = dict(headers)
        headers.update({k: v for k, v in request.headers.items() if k not in headers})
    return {name.title(): value for name, value in headers.items()}


def resolve_timeout(timeout: Any) -> float | None:
    """An omitted timeout means ``socket.getdefaulttimeout()`` now, as in socket.create_connection."""
    if timeout is socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
        return socket.getdefaulttimeout()
    return timeout  # type: ignore[no-any-return]
