"""Request in, reply out, independent of any server interface: the WSGI and ASGI apps and framework views
all call :meth:`Endpoints.respond` with a method, a path and the ``Authorization`` header.

Order of checks: the token first (so an unauthenticated caller learns nothing, not even which paths
exist), then the path (404), then the method (405 with ``Allow``). ``HEAD`` is answered like ``GET``
without the body. An unexpected error is logged with its traceback and answered with a bare 500: the
reply never carries exception text, request headers or the token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from db_utils.monitor.auth import challenge, resolve_token
from db_utils.monitor.views import Monitor, default_monitor

logger = logging.getLogger("db_utils.monitor")

ROUTES: dict[str, Callable[[Monitor], dict[str, Any]]] = {
    "/connection-pools": Monitor.connection_pools,
    "/system-health": Monitor.system_health,
    "/alerts": Monitor.alerts,
}
ALLOWED_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class Reply:
    """An HTTP response: status code, headers (``Content-Type`` and ``Content-Length`` included), body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def status_line(self) -> str:
        """``"200 OK"``: the form WSGI's ``start_response`` takes."""
        return f"{self.status} {HTTPStatus(self.status).phrase}"


class Endpoints:
    """The three endpoints of one :class:`Monitor`, behind an optional bearer token.

    ``monitor`` defaults to the process-wide one (:func:`default_monitor`), so every app and the watcher
    share one alert memory and log each change once. ``token`` defaults to ``POOLSHIFT_MONITOR_TOKEN``,
    read now (see :mod:`db_utils.monitor.auth`).
    """

    def __init__(self, *, monitor: Monitor | None = None, token: str | None = None) -> None:
        self.monitor = monitor or default_monitor()
        self._token = resolve_token(token)

    def respond(self, method: str, path: str, authorization: str | None) -> Reply:
        if self._token is not None and not self._token.accepts(authorization):
            headers = (("WWW-Authenticate", challenge(authorization)),)
            return _json_reply(HTTPStatus.UNAUTHORIZED, {"error": "unauthorized"}, headers)
        view = ROUTES.get(path)
        if view is None:
            return _json_reply(HTTPStatus.NOT_FOUND, {"error": "not found", "endpoints": sorted(ROUTES)})
        if method not in ALLOWED_METHODS:
            headers = (("Allow", ", ".join(ALLOWED_METHODS)),)
            return _json_reply(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "method not allowed"}, headers)
        try:
            document = view(self.monitor)
        except Exception:
            logger.exception("monitoring endpoint %s failed", path)
            return _json_reply(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})
        status = HTTPStatus.SERVICE_UNAVAILABLE if document.get("status") == "unhealthy" else HTTPStatus.OK
        reply = _json_reply(status, document)
        return Reply(reply.status, reply.headers, b"") if method == "HEAD" else reply


def _json_reply(
    status: HTTPStatus, document: dict[str, Any], extra: tuple[tuple[str, str], ...] = ()
) -> Reply:
    body = json.dumps(document, separators=(",", ":"), allow_nan=False).encode()
    headers = (
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *extra,
    )
    return Reply(int(status), headers, body)
