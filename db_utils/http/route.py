"""Decide whether a call can go through the pool or must be handed to urllib unchanged.

The pool reproduces urllib's default opener for plain http/https. Anything else urllib would do
differently is not re-implemented: the call goes to ``urllib.request.urlopen`` with the same arguments.

Proxies: urllib reads the proxy settings from the environment on every call, and so must the pool (a
proxy that applies sends the call to urllib). On POSIX, ``getproxies()`` walks every environment variable
twice, decoding and lower-casing each name, a sizeable share of a whole pooled request to a fast local
server (bench/README.md, section HTTP). Its result depends on nothing but the environment's *names*
(which end in ``_proxy``, in any case, and whether ``REQUEST_METHOD`` is set) and the *values* of the
``*_proxy`` variables, so :func:`current_proxies` keeps it with a signature of exactly that: the set of
raw variable names and an :class:`~db_utils.config.EnvironSignature` of the proxy variables. Any change
to a name or to a proxy value (``os.environ[...] = ...``, ``del``, ``monkeypatch.setenv``...) changes it,
and the next call reads the environment again through urllib's own function. Exactness therefore rests on
urllib's function, never on a re-implementation of it. The shortcut is taken only while
:func:`~db_utils.config.raw_environ` can be trusted and ``urllib.request.getproxies`` is urllib's own
environment reader (Linux and other POSIX but macOS); a monkeypatched ``getproxies`` or another
platform's reader (macOS system settings, the Windows registry, which no signature can watch) gets the
plain call every time.
"""

from __future__ import annotations

import http.client
import urllib.request
from typing import Any, NamedTuple

from db_utils.config import EnvironSignature, decode_name, raw_environ

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
# urllib's handlers look these up per call, so a test's replacement (vcrpy's recording classes, a mock)
# sees every legacy request; the pool's connections are made from its own classes and would go round it.
_STOCK_HTTP = http.client.HTTPConnection
_STOCK_HTTPS = http.client.HTTPSConnection


def route(  # noqa: PLR0911 - one return per reason, a stats key each
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
        request = url if isinstance(url, urllib.request.Request) else new_request(url)
    except ValueError:
        return "invalid-url"  # urllib raises its own error for it; let it
    if request.type not in ("http", "https"):
        return "scheme"
    if http.client.HTTPConnection is not _STOCK_HTTP or http.client.HTTPSConnection is not _STOCK_HTTPS:
        return "http-client-patched"
    if installed_opener_is_custom():
        return "opener"
    if proxy_applies(request, proxies):
        return "proxy"
    return request


# -- the Request urllib's opener would build from a URL string ---------------------------------------------

# ``Request(url)`` parses the URL twice (its own split, then ``urlparse`` for ``origin_req_host``), about
# as much work as the rest of the direct path's Python. The attributes it sets depend on nothing but the
# string, so those of the last Request built for each URL are kept and copied into the next one.
_STOCK_REQUEST = urllib.request.Request
_STOCK_REQUEST_INIT = urllib.request.Request.__init__
_REQUEST_TEMPLATES_MAX = 256  # distinct URL strings kept; a service calls a few endpoints over and over
_request_templates: dict[str, dict[str, Any]] = {}
_PER_REQUEST = frozenset({"headers", "unredirected_hdrs"})  # new dicts for every request


def new_request(url: Any) -> urllib.request.Request:
    """``urllib.request.Request(url)``, equal attribute for attribute, built from a kept copy when it can.

    Only for an exact ``str`` and urllib's own, unpatched ``Request``; anything else is built by the call
    itself (and a URL it rejects raises its ``ValueError`` each time: nothing is kept for it). The kept
    values are strings, ``None`` and ``False``; the two header dicts are new for every request.
    """
    cls = urllib.request.Request
    if type(url) is not str or cls is not _STOCK_REQUEST or cls.__init__ is not _STOCK_REQUEST_INIT:
        return cls(url)
    template = _request_templates.get(url)
    if template is None:
        request = cls(url)
        if len(_request_templates) >= _REQUEST_TEMPLATES_MAX:
            _request_templates.clear()  # a crawler's endless URLs: start over rather than track recency
        _request_templates[url] = {k: v for k, v in vars(request).items() if k not in _PER_REQUEST}
        return request
    request = cls.__new__(cls)
    vars(request).update(template)
    request.headers = {}
    request.unredirected_hdrs = {}
    return request


# The opener last found to be urllib's default one, with its handler count then. Any plain
# urllib.request.urlopen call installs such an opener, and judging it takes ten handler checks per call,
# so the verdict is kept while the same object, with as many handlers and the default addheaders, is
# installed. (Handlers added with add_handler, a new addheaders or install_opener() of another opener are
# seen at once; what is kept is only that urllib's own handlers carry urllib's defaults, which urllib sets
# when it builds them and never changes.)
_known_stock: tuple[urllib.request.OpenerDirector, int] | None = None


def installed_opener_is_custom() -> bool:
    """True when ``urllib.request.install_opener`` installed something other than urllib's default opener."""
    global _known_stock  # noqa: PLW0603 - one slot, rebound atomically (see current_proxies' cache)
    opener = getattr(urllib.request, "_opener", None)  # urllib's own global (not in typeshed); read only
    if opener is None:
        return False
    handlers: list[urllib.request.BaseHandler] = getattr(opener, "handlers", [])
    known = _known_stock
    if (
        known is not None
        and known[0] is opener
        and known[1] == len(handlers)
        and opener.addheaders == DEFAULT_ADDHEADERS
    ):
        return False
    if not _is_stock_opener(opener):
        return True
    _known_stock = (opener, len(handlers))
    return False


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


# -- proxies: urllib.request.getproxies(), kept while the environment's signature is unchanged -----------

# urllib's POSIX reader, as imported: ``urllib.request.getproxies`` is this very function on Linux.
_ENVIRONMENT_READER = urllib.request.getproxies_environment


class _Cached(NamedTuple):
    names: frozenset[Any]  # every environment name, raw (bytes on POSIX)
    proxy_values: EnvironSignature  # the variables urllib reads a proxy from
    signature: tuple[Any, ...]  # their raw values when urllib's reader ran
    proxies: dict[str, str]  # what urllib's reader returned for exactly that environment


# One immutable tuple, replaced wholesale: reading and rebinding a module global is atomic under the GIL,
# so threads need no lock (at worst two threads both refresh it after a change, with the same result).
_cached: _Cached | None = None


def current_proxies() -> dict[str, str]:
    """What ``urllib.request.getproxies()`` returns now (a new dict each call, as urllib's is)."""
    environ = raw_environ()
    if environ is None or urllib.request.getproxies is not _ENVIRONMENT_READER:
        return urllib.request.getproxies()
    cached = _cached
    if cached is not None and environ.keys() == cached.names and cached.proxy_values() == cached.signature:
        return dict(cached.proxies)
    return _refresh(environ)


def _refresh(environ: dict[Any, Any]) -> dict[str, str]:
    global _cached  # noqa: PLW0603 - the one cache slot, replaced atomically (see above)
    names = frozenset(environ)
    proxy_values = EnvironSignature(sorted(decode_name(raw) for raw in names if _is_proxy_name(raw)))
    signature = proxy_values()
    proxies = _ENVIRONMENT_READER()
    # Another thread may change the environment while urllib reads it; then the answer belongs to no
    # single signature, so it is returned (as urllib's own would be) but not kept.
    if environ.keys() == names and proxy_values() == signature:
        _cached = _Cached(names, proxy_values, signature, dict(proxies))
    return proxies


def _is_proxy_name(raw: Any) -> bool:
    """True for every name urllib's reader takes a proxy from (either of its two passes)."""
    name = decode_name(raw)
    return name.lower()[-6:] == "_proxy" or name[-6:] == "_proxy"
