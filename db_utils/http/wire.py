"""urllib3 connection and pool classes that report what happened on the wire, and the HTTP counters.

urllib3 wraps socket errors in its own exception types; urllib shows the caller the original ones, and
which one it shows depends on *when* it happened (while sending: ``URLError(err)``; while waiting for the
response: the error itself). The connection methods below therefore record, for the request in progress,
the first original error and the phase it happened in, plus whether the request went out on a socket
that had already carried a request (only such a request may be retried when the socket turns out dead).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error

from db_utils.stats import PoolCounters

#: The HTTP transport's figures, reported by ``pool_status()`` under ``"http"``. ``calls`` counts every
#: ``urlopen`` call, ``requests`` the ones sent over the pool (a redirect or a stale-socket retry sends
#: more than one), ``fallbacks`` the calls handed to urllib, by reason, and ``opener_path`` the pooled calls
#: sent through urllib's opener and urllib3 instead of the direct path (db_utils.http.direct), by reason.
counters = PoolCounters(
    {
        "calls": 0,
        "requests": 0,
        "connections_created": 0,
        "connect_failures": 0,
        "reuses": 0,
        "stale_retries": 0,
        "discarded": 0,
    },
    reuse_of="requests",
    tallies=("fallbacks", "opener_path"),
)


@dataclass
class Attempt:
    """What happened to one request attempt, filled in by the connection it used."""

    reused: bool = False
    error: BaseException | None = None
    phase: str | None = None  # "send" (connect + request) or "response" (status line and headers)

    def record(self, error: BaseException, phase: str) -> None:
        if self.error is None:  # the first error is the cause; later ones are fallout from it
            self.error, self.phase = original_error(error), phase


# A ContextVar rather than a thread-local: it is per thread *and* per asyncio task, and urllib3 calls the
# connection methods synchronously in the caller's context, so the attempt is always the caller's own.
current_attempt: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "poolshift_http_attempt", default=None
)


def original_error(error: BaseException) -> BaseException:
    """Peel urllib3's wrappers (NewConnectionError, ConnectTimeoutError, SSLError...) off a socket error."""
    while isinstance(error, Urllib3Error):
        inner = error.__cause__
        if inner is None and error.args and isinstance(error.args[0], BaseException):
            inner = error.args[0]
        if inner is None:
            break
        error = inner
    return error


def _record(error: BaseException, phase: str) -> None:
    attempt = current_attempt.get()
    if attempt is not None:
        attempt.record(error, phase)


class TrackedHTTPConnection(HTTPConnection):
    """Counts sockets opened and requests sent on each socket; records errors for the current attempt."""

    _requests_on_socket = 0
    _drop_zero_length = False

    def connect(self) -> None:
        try:
            super().connect()
        except BaseException as exc:
            _record(exc, "send")  # urllib connects inside h.request(): a connect error is a send error
            counters.add(connect_failures=1)
            raise
        self._requests_on_socket = 0
        counters.add(connections_created=1)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        # HTTP connects lazily inside super().request(), HTTPS before it (urllib3's _validate_conn); either
        # way, a socket that is open *and* has carried a request before is a reused one.
        reused = self.sock is not None and self._requests_on_socket > 0
        counters.add(requests=1, reuses=int(reused))
        attempt = current_attempt.get()
        if attempt is not None:
            attempt.reused = reused
        self._drop_zero_length = _urllib_sends_no_length(method, args, kwargs)
        try:
            super().request(method, url, *args, **kwargs)
        except BaseException as exc:
            _record(exc, "send")
            raise
        finally:
            self._drop_zero_length = False
            # Counted after the fact: a lazy connect() inside super().request() resets the count.
            self._requests_on_socket += 1

    def putheader(self, header: str | bytes, *values: Any) -> None:
        name = header.decode("latin-1") if isinstance(header, bytes) else header
        if self._drop_zero_length and name.lower() == "content-length" and values == ("0",):
            return  # urllib3's own addition; see _urllib_sends_no_length
        super().putheader(name, *values)

    def getresponse(self) -> urllib3.HTTPResponse:  # type: ignore[override]
        try:
            return super().getresponse()
        except BaseException as exc:
            _record(exc, "response")
            raise


def _urllib_sends_no_length(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """True when http.client would send no Content-Length but urllib3 would add ``Content-Length: 0``.

    That is a body-less request with a method outside both libraries' lists (``PURGE``, ``PROPFIND``...):
    http.client sends a zero length only for POST/PUT/PATCH, urllib3 for everything but GET/HEAD/DELETE/
    TRACE/OPTIONS/CONNECT. Only urllib3's automatic header is dropped, never one the caller set.
    """
    body = args[0] if args else kwargs.get("body")
    headers = args[1] if len(args) > 1 else kwargs.get("headers") or {}
    if body is not None or method.upper() in _METHODS_EXPECTING_BODY:
        return False
    return not any(name.lower() in ("content-length", "transfer-encoding") for name in headers)


# http.client's own list (http.client._METHODS_EXPECTING_BODY), copied because it is private.
_METHODS_EXPECTING_BODY = frozenset({"PATCH", "POST", "PUT"})


class TrackedHTTPSConnection(TrackedHTTPConnection, HTTPSConnection):
    """The HTTPS flavour: same tracking, urllib3's TLS setup."""


class TrackedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = TrackedHTTPConnection


class TrackedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = TrackedHTTPSConnection

    def _validate_conn(self, conn: Any) -> None:
        """Connect early as urllib3 does, without its InsecureRequestWarning.

        urllib stays silent when the caller passes an unverified context (``ssl._create_unverified_context()``
        is a common legacy idiom); warning on every new connection would be a behavior change. Filtering
        the warning globally would silence it for every other urllib3 user in the process, so it is
        suppressed here, where the pool itself would raise it.
        """
        if conn.is_closed:
            conn.connect()


POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {
    "http": TrackedHTTPConnectionPool,
    "https": TrackedHTTPSConnectionPool,
}
