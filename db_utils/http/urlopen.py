"""``urlopen``: a drop-in for ``urllib.request.urlopen`` that keeps connections alive in urllib3 pools.

Same signature, same behavior, same exceptions; connections are reused across calls and threads instead
of paying a TCP (and TLS) handshake per call. Calls the pool cannot serve identically go to urllib
unchanged: non-http(s) URLs, a globally installed opener, a proxy that applies to the URL, the deprecated
``cafile``/``capath``/``cadefault`` arguments, or ``HTTP_POOL_ENABLED=false``. See migration_guide/http.md.
"""

from __future__ import annotations

import socket
import ssl
import urllib.request
from typing import Any

from db_utils import stats
from db_utils.http import manager
from db_utils.http.route import current_proxies, route
from db_utils.http.transport import call_context, opener_for
from db_utils.http.wire import counters


def urlopen(
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
    token = call_context.set(context)
    try:
        # The parsed Request, not the string: OpenerDirector.open would build an identical one from it.
        return opener_for(proxies).open(routed, data, timeout)
    finally:
        call_context.reset(token)


def dispose() -> None:
    """Close all idle pooled connections; the next call re-reads the ``HTTP_POOL_*`` settings.

    Responses still being read keep their connection until closed; it is then discarded, not pooled.
    """
    manager.dispose()


def http_stats() -> dict[str, Any]:
    """Counters and settings of the HTTP pool, as included in ``pool_status()["http"]``."""
    return {**counters.snapshot(), **manager.status()}


stats.register_source("http", http_stats)
stats.register_disposer("http", dispose)
