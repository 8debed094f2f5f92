"""The monitoring endpoints as a plain ASGI 3 application (no framework, no dependency).

It serves HTTP and answers the lifespan protocol, so it runs alone under any asyncio ASGI server
(uvicorn, hypercorn) or mounted in a framework (FastAPI/Starlette ``app.mount("/monitor", ...)``). The
path it routes on is the request path without the mount prefix: ``root_path`` is removed when the path
starts with it (servers and Starlette now keep the prefix in ``path``; older ones strip it themselves).
Building a reply may ping a database, so it runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from db_utils.monitor.dispatch import Endpoints
from db_utils.monitor.views import Monitor

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class MonitorASGI:
    """An ASGI callable serving ``/connection-pools``, ``/system-health`` and ``/alerts``."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1003})  # before accept: the server answers 403
        else:
            raise ValueError(f"unsupported ASGI scope type {scope['type']!r}")

    async def _http(self, scope: Scope, send: Send) -> None:
        authorization = None
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                authorization = value.decode("latin-1")
        reply = await asyncio.to_thread(
            self.endpoints.respond, scope["method"].upper(), route_path(scope), authorization
        )
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})


def route_path(scope: Scope) -> str:
    """The request path below the mount point (``root_path``)."""
    path: str = scope.get("path", "") or "/"
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :] or "/"
    return path


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: acknowledge both, so servers with lifespan "on" run us too."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def make_asgi_app(*, monitor: Monitor | None = None, token: str | None = None) -> MonitorASGI:
    """The ASGI app; ``token`` defaults to ``POOLSHIFT_MONITOR_TOKEN`` (read now), ``monitor`` to the
    process-wide one."""
    return MonitorASGI(Endpoints(monitor=monitor, token=token))
