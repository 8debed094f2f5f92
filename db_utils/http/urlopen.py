"""``urlopen``: a drop-in for ``urllib.request.urlopen`` that keeps connections alive in urllib3 pools.

Same signature, same behavior, same exceptions; connections are reused across calls and threads instead
of paying a TCP (and TLS) handshake per call. Calls the pool cannot serve identically go to urllib
unchanged: non-http(s) URLs, a globally installed opener, a proxy that applies to the URL, the deprecated
``cafile``/``capath``/``cadefault`` arguments, or ``HTTP_POOL_ENABLED=false``. While a test replaces
``urllib.request.urlopen`` with a stand-in (a mock, a fake), each call goes to the stand-in with the
caller's own arguments, as the legacy call did (see :mod:`db_utils.stand_ins`). See migration_guide/http.md.

The common call takes the direct path (:func:`_open_direct`): urllib's ``OpenerDirector.open``, step for
step, but with its handler chain (``default_open``, ``ProxyHandler``, ``http_open``, urllib3's request
path) replaced by one send over a kept-alive ``http.client`` connection. urllib's own request processors
(``do_request_``: the default headers) and response processors (``HTTPErrorProcessor``, hence redirects and
``HTTPError``, through the opener's handlers) still run, so only the transport differs. The rest goes
through the opener with the urllib3 transport (transport.py), for the reasons ``direct.why_not_direct``
names.
"""

from __future__ import annotations

import socket
import ssl
import sys
import urllib.request
from typing import Any

from db_utils import stats
from db_utils.http import direct, keepalive, manager
from db_utils.http.route import current_proxies, route
from db_utils.http.transport import call_context, opener_for
from db_utils.http.wire import counters
from db_utils.stand_ins import DriverFunction, defined_in, drop_in

#: urllib's own ``urlopen``, told from a test's stand-in (see :mod:`db_utils.stand_ins`).
_STOCK_URLOPEN = DriverFunction(urllib.request.urlopen, defined_in("urllib/request.py", "urlopen"))


def _pooled_urlopen(
    url: str | urllib.request.Request,
    data: Any = None,
    timeout: float | None = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
    *,
    cafile: str | None = None,
    capath: str | None = None,
    cadefault: bool = False,
    context: ssl.SSLContext | None = None,
) -> Any:  # Any, as typeshed types urllib.request.urlopen: callers' own annotations keep working
    """Open ``url`` like ``urllib.request.urlopen``, over a pooled keep-alive connection when possible."""
    proxies = current_proxies()  # urllib.request.getproxies(), cached while the environment is unchanged
    settings = manager.current_settings()
    routed = "disabled" if not settings.enabled else route(url, proxies, cafile, capath, cadefault)
    if isinstance(routed, str):  # the reason the pool cannot serve this call identically
        counters.tally("fallbacks", routed, calls=1)
        # Typed as Any: typeshed's overloads reject passing context= and cafile= together, which urllib
        # itself accepts (and rejects at run time with its own error, which is what the caller must see).
        stock_urlopen: Any = urllib.request.urlopen
        return stock_urlopen(
            url, data, timeout, cafile=cafile, capath=capath, cadefault=cadefault, context=context
        )
    counters.add(calls=1)
    if data is not None:
        routed.data = data  # what OpenerDirector.open does first; before get_method(), which depends on it
    method = routed.get_method()
    opener = opener_for(proxies)
    token = call_context.set(context)  # for redirect hops, which go through the opener's handlers
    try:
        indirect = direct.why_not_direct(routed, method, settings)
        if indirect is None:
            return _open_direct(opener, routed, method, timeout, context)
        counters.tally("opener_path", indirect)
        # The parsed Request, not the string: OpenerDirector.open would build an identical one from it.
        return opener.open(routed, data, timeout)
    finally:
        call_context.reset(token)


def _count_stand_in() -> None:
    counters.tally("fallbacks", "stand-in", calls=1)


urlopen = drop_in(_pooled_urlopen, urllib.request, "urlopen", _STOCK_URLOPEN, _count_stand_in)


def _open_direct(
    opener: urllib.request.OpenerDirector,
    request: urllib.request.Request,
    method: str,
    timeout: Any,
    context: ssl.SSLContext | None,
) -> Any:
    """``OpenerDirector.open`` (CPython's Lib/urllib/request.py), its ``_open`` replaced by a direct send.

    ``request.data`` is already set, and ``method`` is its ``get_method()`` (urllib's processors change
    neither).
    """
    request.timeout = timeout
    protocol = request.type
    for processor in opener.process_request.get(protocol, ()):  # type: ignore[attr-defined]
        request = getattr(processor, protocol + "_request")(request)
    sys.audit("urllib.Request", request.full_url, request.data, request.headers, method)
    response: Any = direct.send(request, protocol, context, method)
    for processor in opener.process_response.get(protocol, ()):  # type: ignore[attr-defined]
        response = getattr(processor, protocol + "_response")(request, response)
    return response


def dispose() -> None:
    """Close all idle pooled connections; the next call re-reads the ``HTTP_POOL_*`` settings.

    Responses still being read keep their connection until closed; it is then discarded, not pooled.
    """
    manager.dispose()
    keepalive.dispose()


def http_stats() -> dict[str, Any]:
    """Counters and settings of the HTTP pool, as included in ``pool_status()["http"]``."""
    figures = {**counters.snapshot(), **manager.status()}
    figures["pools"] += keepalive.pool_count()
    return figures


stats.register_source("http", http_stats)
stats.register_disposer("http", dispose)
