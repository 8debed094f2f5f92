"""The monitoring endpoints as a WSGI application (standard library only).

Mount it under a prefix with your framework's dispatcher (Flask/werkzeug ``DispatcherMiddleware``), or
serve it alone (``wsgiref``, gunicorn). Paths are read from ``PATH_INFO``, which a dispatcher has already
stripped of the mount prefix. See migration_guide/monitoring.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

from db_utils.monitor.dispatch import Endpoints
from db_utils.monitor.views import Monitor


class MonitorWSGI:
    """A WSGI callable serving ``/connection-pools``, ``/system-health`` and ``/alerts``."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        reply = self.endpoints.respond(
            environ.get("REQUEST_METHOD", "GET").upper(),
            environ.get("PATH_INFO", "") or "/",
            environ.get("HTTP_AUTHORIZATION"),
        )
        start_response(reply.status_line, list(reply.headers))
        return [reply.body]


def make_wsgi_app(*, monitor: Monitor | None = None, token: str | None = None) -> MonitorWSGI:
    """The WSGI app; ``token`` defaults to ``POOLSHIFT_MONITOR_TOKEN`` (read now), ``monitor`` to the
    process-wide one."""
    return MonitorWSGI(Endpoints(monitor=monitor, token=token))
