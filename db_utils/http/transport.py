"""urllib's own OpenerDirector with the http/https transport swapped for one that sends over the pool.

Everything above the socket stays urllib's code: ``Request`` header defaults (``do_request_``), the
``sys.audit`` hook, redirects (``HTTPRedirectHandler``: method rules, 10-hop limit, loop detection),
``HTTPError`` for non-2xx responses, data/file/ftp URLs reached by a redirect. Only ``http_open`` and
``https_open`` differ, and they too hand a request to urllib's own code when a proxy applies to it.

:func:`send` is the pooled replacement for the body of ``AbstractHTTPHandler.do_open``: same headers on
the wire (minus ``Connection: close``), same timeout, and the same exceptions: an ``OSError`` while
connecting or sending becomes ``URLError(err)``, anything raised while reading the response comes out
unchanged.
"""

from __future__ import annotations

import contextvars
import http.client
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, cast

import urllib3
from urllib3.exceptions import ClosedPoolError, EmptyPoolError, ReadTimeoutError
from urllib3.util import Timeout

from db_utils.http import direct
from db_utils.http.direct import (
    DEAD_SOCKET_ERRORS,
    IDEMPOTENT_METHODS,
    resolve_timeout,
    split_host_port,
    why_not_direct,
    wire_headers,
)
from db_utils.http.manager import current_settings, default_tls_context, pool_manager
from db_utils.http.response import PooledResponse
from db_utils.http.wire import Attempt, counters, current_attempt, original_error


def send(request: urllib.request.Request, scheme: str, context: ssl.SSLContext | None) -> PooledResponse:
    """Send ``request`` (already through urllib's ``do_request_``) and return its response."""
    host, port = split_host_port(request.host, scheme)
    method = request.get_method()
    headers = wire_headers(request)
    timeout = resolve_timeout(request.timeout)
    for attempt_number in (1, 2):
        attempt = Attempt()
        token = current_attempt.set(attempt)
        try:
            pool = pool_manager().connection_from_host(
                host, port, scheme, pool_kwargs=tls_kwargs(scheme, context)
            )
            response = pool.urlopen(
                method,
                request.selector,
                body=cast(Any, request.data),  # any body urllib accepts; urllib3 takes the same kinds
                headers=headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                timeout=Timeout(connect=timeout, read=timeout),
                pool_timeout=cast(Any, timeout),  # typeshed says int; a float works
                release_conn=False,
                preload_content=False,
                decode_content=False,
                chunked=request.has_header("Transfer-encoding"),
            )
        except Exception as exc:
            if attempt_number == 1 and _may_resend(attempt, exc, method, request.data):
                counters.add(stale_retries=1)
                continue
            raise as_urllib_error(attempt, exc) from None
        finally:
            current_attempt.reset(token)
        return PooledResponse(
            _parsed_by_http_client(response), request.get_full_url(), method, _releaser(response)
        )
    raise AssertionError("unreachable: the second attempt returns or raises")  # pragma: no cover


def _parsed_by_http_client(response: urllib3.BaseHTTPResponse) -> http.client.HTTPResponse:
    raw: http.client.HTTPResponse | None = getattr(response, "_original_response", None)
    if raw is None:  # pragma: no cover - urllib3 always sets it for responses read from a socket
        raise RuntimeError("urllib3 returned a response without its http.client response")
    return raw


def _releaser(response: urllib3.BaseHTTPResponse) -> Callable[[bool], None]:
    def release(reusable: bool) -> None:
        if not reusable:
            response.close()  # closes the socket
        response.release_conn()  # returns the pool slot even for a closed connection

    return release


def tls_kwargs(scheme: str, context: ssl.SSLContext | None) -> dict[str, Any] | None:
    """Pool keyword arguments for https. The context is part of the pool key: contexts never share sockets."""
    if scheme != "https":
        return None
    context = context if context is not None else default_tls_context()
    # urllib3 checks hostnames itself when the context does not; with check_hostname off, http.client
    # accepts any name, so urllib3 is told not to check either.
    return {"ssl_context": context, "assert_hostname": None if context.check_hostname else False}


def _may_resend(attempt: Attempt, exc: Exception, method: str, body: Any) -> bool:
    """Resend only an idempotent, replayable request whose reused socket turned out dead.

    A request on a fresh connection is never resent (the failure is real, urllib would report it); a
    non-idempotent one is never resent once any byte of it may have reached the server.
    """
    if isinstance(exc, ClosedPoolError) and attempt.phase is None:
        return True  # dispose() closed the pool between lookup and checkout; nothing was sent
    replayable = body is None or isinstance(body, (bytes, bytearray, memoryview))
    return (
        attempt.reused
        and method in IDEMPOTENT_METHODS
        and replayable
        and isinstance(attempt.error, DEAD_SOCKET_ERRORS)
    )


def as_urllib_error(attempt: Attempt, exc: Exception) -> BaseException:
    """The exception urllib would have raised for this failure."""
    error = attempt.error
    if error is None:
        return _unrecorded_error(exc)
    if attempt.phase == "send" and isinstance(error, OSError):
        return urllib.error.URLError(error)
    return error


def _unrecorded_error(exc: Exception) -> BaseException:
    """Failures raised by urllib3 itself rather than by a socket."""
    if isinstance(exc, EmptyPoolError):
        settings = current_settings()
        return urllib.error.URLError(
            TimeoutError(
                f"timed out waiting for a free pooled connection (HTTP_POOL_BLOCK=true, "
                f"HTTP_POOL_MAXSIZE={settings.maxsize})"
            )
        )
    if isinstance(exc, ReadTimeoutError):
        return TimeoutError("timed out")
    inner = original_error(exc)
    if isinstance(inner, OSError) and not isinstance(inner, urllib3.exceptions.HTTPError):
        return urllib.error.URLError(inner)
    return inner


# -- the opener: urllib's, with these two handlers for http and https ----------------------------------

# The TLS context of the urlopen call in progress. A redirect creates new Request objects, so the context
# cannot ride on the request; the call's context variable follows it through every hop.
call_context: contextvars.ContextVar[ssl.SSLContext | None] = contextvars.ContextVar(
    "poolshift_http_context", default=None
)


class PooledHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        if req.has_proxy():  # a redirect hop the opener's ProxyHandler routed through a proxy
            return super().http_open(req)
        return send_pooled(req, "http", None)


class PooledHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        context = call_context.get()
        if req.has_proxy():
            return self.do_open(http.client.HTTPSConnection, req, context=context)
        return send_pooled(req, "https", context)


def send_pooled(request: urllib.request.Request, scheme: str, context: ssl.SSLContext | None) -> Any:
    """A redirect hop (or a whole call the direct path does not take): direct when it can, else urllib3."""
    method = request.get_method()
    if why_not_direct(request, method, current_settings()) is None:
        return direct.send(request, scheme, context, method)
    return send(request, scheme, context)


_openers: dict[tuple[tuple[str, str], ...], urllib.request.OpenerDirector] = {}
_openers_lock = (
    threading.Lock()
)  # guards _openers; an opener itself is shared freely, as urllib shares its own


def opener_for(proxies: dict[str, str]) -> urllib.request.OpenerDirector:
    """An opener like ``build_opener()``'s, whose ProxyHandler sees the proxies in force for this call.

    urllib's default opener captures the environment's proxies once; the pool reads them per call (the
    caller only gets here when none applies to the first URL), and a redirect to a host that does need
    the proxy must still use it. Openers are cached per proxy configuration: building one costs more
    than a local request.
    """
    key = tuple(sorted(proxies.items()))
    opener = _openers.get(key)
    if opener is None:
        with _openers_lock:
            opener = _openers.get(key)
            if opener is None:
                opener = urllib.request.build_opener(
                    urllib.request.ProxyHandler(proxies), PooledHTTPHandler(), PooledHTTPSHandler()
                )
                _openers[key] = opener
    return opener
