"""urllib's own OpenerDirector with the http/https transport swapped for the pooled one.

Everything above the socket stays urllib's code: ``Request`` header defaults (``do_request_``), the
``sys.audit`` hook, redirects (``HTTPRedirectHandler``: method rules, 10-hop limit, loop detection),
``HTTPError`` for non-2xx responses, data/file/ftp URLs reached by a redirect. Only ``http_open`` and
``https_open`` differ, and they too hand a request to urllib's own code when a proxy applies to it.
"""

from __future__ import annotations

import contextvars
import http.client
import ssl
import threading
import urllib.request
from typing import Any

from db_utils._http_transport import send

# The TLS context of the urlopen call in progress. A redirect creates new Request objects, so the context
# cannot ride on the request; the call's context variable follows it through every hop.
call_context: contextvars.ContextVar[ssl.SSLContext | None] = contextvars.ContextVar(
    "poolshift_http_context", default=None
)


class PooledHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        if req.has_proxy():  # a redirect hop the opener's ProxyHandler routed through a proxy
            return super().http_open(req)
        return send(req, "http", None)


class PooledHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        context = call_context.get()
        if req.has_proxy():
            return self.do_open(http.client.HTTPSConnection, req, context=context)
        return send(req, "https", context)


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
