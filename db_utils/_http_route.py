"""Decide whether a call can go through the pool or must be handed to urllib unchanged.

The pool reproduces urllib's default opener for plain http/https. Anything else urllib would do
differently is not re-implemented: the call goes to ``urllib.request.urlopen`` with the same arguments.
"""

from __future__ import annotations

import urllib.request
from typing import Any

# The handler types ``urllib.request.build_opener()`` installs by default. An opener made of exactly these,
# with default settings, behaves like no opener at all: urllib itself creates one on its first call and
# stores it in ``urllib.request._opener``, so that attribute alone cannot tell a user-installed opener apart.
_STOCK_HANDLERS = frozenset(
    {
        urllib.request.ProxyHandler,
        urllib.request.UnknownHandler,
        urllib.request.HTTPHandler,
        urllib.request.HTTPDefaultErrorHandler,
        urllib.request.HTTPRedirectHandler,
        urllib.request.FTPHandler,
        urllib.request.FileHandler,
        urllib.request.HTTPErrorProcessor,
        urllib.request.DataHandler,
        urllib.request.HTTPSHandler,
    }
)
DEFAULT_ADDHEADERS = urllib.request.OpenerDirector().addheaders


def route(
    url: str | urllib.request.Request, proxies: dict[str, str], cafile: Any, capath: Any, cadefault: Any
) -> str | urllib.request.Request:
    """The reason the call must go to urllib (a ``str``: a stats key), or the ``Request`` the pool sends:
    the one urllib's opener would build from ``url`` (``url`` itself if it is one). The pooled call hands
    it to the opener, so that the URL is parsed once per call, not twice.

    ``proxies`` is ``urllib.request.getproxies()``, read once per call by the caller.
    """
    if cafile or capath or cadefault:  # the same truth test urllib.request.urlopen applies
        return "cafile"
    try:
        request = url if isinstance(url, urllib.request.Request) else urllib.request.Request(url)  # noqa: S310 - parsed only
    except ValueError:
        return "invalid-url"  # urllib raises its own error for it; let it
    if request.type not in ("http", "https"):
        return "scheme"
    if installed_opener_is_custom():
        return "opener"
    if proxy_applies(request, proxies):
        return "proxy"
    return request


def installed_opener_is_custom() -> bool:
    """True when ``urllib.request.install_opener`` installed something other than urllib's default opener."""
    opener = getattr(urllib.request, "_opener", None)  # urllib's own global (not in typeshed); read only
    return opener is not None and not _is_stock_opener(opener)


def _is_stock_opener(opener: urllib.request.OpenerDirector) -> bool:
    handlers: list[urllib.request.BaseHandler] = getattr(opener, "handlers", [])
    types = {type(handler) for handler in handlers}
    # A ProxyHandler without proxies registers no *_open method, so build_opener() leaves it out.
    if types not in (_STOCK_HANDLERS, _STOCK_HANDLERS - {urllib.request.ProxyHandler}):
        return False
    if len(handlers) != len(types):  # the same handler type twice is not a default opener
        return False
    if opener.addheaders != DEFAULT_ADDHEADERS:
        return False
    return all(_handler_is_default(handler) for handler in handlers)


def _handler_is_default(handler: urllib.request.BaseHandler) -> bool:
    # Attributes set by the handlers' constructors (not in typeshed, hence getattr).
    if isinstance(handler, urllib.request.ProxyHandler):
        # Proxies captured when urllib built the opener; urllib keeps using them even if the environment
        # changed since, so only an opener without proxies is equivalent to the pool.
        return not getattr(handler, "proxies", None)
    if isinstance(handler, urllib.request.HTTPSHandler):
        return (
            getattr(handler, "_context", None) is None
            and getattr(handler, "_check_hostname", None) is None
            and getattr(handler, "_debuglevel", 0) == 0
        )
    if isinstance(handler, urllib.request.HTTPHandler):
        return getattr(handler, "_debuglevel", 0) == 0
    return True


def proxy_applies(request: urllib.request.Request, proxies: dict[str, str]) -> bool:
    """True when urllib's default ProxyHandler would send this request through a proxy."""
    if request.type not in proxies:
        return False
    return not (request.host and urllib.request.proxy_bypass(request.host))
