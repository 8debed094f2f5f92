"""Pooled HTTP: ``urlopen()``, a drop-in for ``urllib.request.urlopen`` (see :mod:`db_utils.http.urlopen`).

Layers, each importing only those below it: ``urlopen`` (the drop-in: route, take the direct path, or fall
back) -> ``route`` (may the pool serve this call; the proxy settings in force) and ``transport``
(urllib's opener, sending over urllib3's pools, for what the direct path does not take) -> ``direct`` (the
common call over a kept-alive http.client connection) -> ``keepalive`` (those connections, per host) and
``manager`` (the process-wide urllib3 PoolManager and the settings) -> ``response`` (the responses both
paths return) -> ``wire`` (urllib3 connections that record what happened on the socket, and the counters).
"""

from db_utils.http.urlopen import dispose, http_stats, urlopen

__all__ = ["dispose", "http_stats", "urlopen"]
