"""Monitoring endpoints for the pools of this process: WSGI and ASGI apps, alerts, lifecycle logging.

``/connection-pools``, ``/system-health`` and ``/alerts`` as JSON (see migration_guide/monitoring.md),
behind an optional bearer token (``POOLSHIFT_MONITOR_TOKEN``). Nothing here runs until called: no
thread, no route and no metric exists before the application creates an app, a watcher or (with
``poolshift[prometheus]``) registers ``db_utils.monitor.prometheus.register_collector()``.
"""

from db_utils.monitor.alerts import AlertBook
from db_utils.monitor.asgi import MonitorASGI, make_asgi_app
from db_utils.monitor.auth import TOKEN_VARIABLE
from db_utils.monitor.dispatch import Endpoints, Reply
from db_utils.monitor.views import Monitor, default_monitor
from db_utils.monitor.watch import Watcher, watch
from db_utils.monitor.wsgi import MonitorWSGI, make_wsgi_app

__all__ = [
    "TOKEN_VARIABLE",
    "AlertBook",
    "Endpoints",
    "Monitor",
    "MonitorASGI",
    "MonitorWSGI",
    "Reply",
    "Watcher",
    "default_monitor",
    "make_asgi_app",
    "make_wsgi_app",
    "watch",
]
