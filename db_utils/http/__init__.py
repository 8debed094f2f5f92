"""Pooled HTTP: ``urlopen()``, a drop-in for ``urllib.request.urlopen`` (see :mod:`db_utils.http.urlopen`).

Layers, each importing only those below it: ``urlopen`` (the drop-in: route or fall back) -> ``route``
(may the pool serve this call; the proxy settings in force) and ``transport`` (urllib's opener, sending
over the pool) -> ``manager`` (the process-wide urllib3 PoolManager and its settings) and ``response``
(urllib's response API over a pooled connection) -> ``wire`` (connections that record what happened on
the socket, and the counters).
"""

from db_utils.http.urlopen import dispose, http_stats, urlopen

__all__ = ["dispose", "http_stats", "urlopen"]
