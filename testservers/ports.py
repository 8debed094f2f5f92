"""Ports on 127.0.0.1 for the test servers that bind a port of their own (PostgreSQL, PgBouncer, nginx...).

:func:`free_port` only finds a port free *now*: between it and the server's own bind, another process (a
server started in parallel, or a client's ephemeral port) can take it, and the server exits with "Address
already in use". :func:`start_on_free_port` starts the server again on another port when that happens.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import TypeVar

#: Starts tried before giving up: each lost race costs one server start, and losing several in a row means
#: something is wrong with the machine rather than unlucky.
BIND_ATTEMPTS = 5

Server = TypeVar("Server")


class PortTaken(RuntimeError):
    """A server could not bind the port :func:`free_port` found free: something took it in between."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to at this moment (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections for as long as the ``with`` block lasts.

    A port :func:`free_port` found free may be taken by a parallel server or a client's ephemeral port
    before the test connects, and then the "unreachable" server answers. A socket bound but never put in
    listening state holds the port (nothing else can bind it), and Linux refuses every connection to it
    (RST, ``ECONNREFUSED``) at once.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def port_taken(output: str) -> bool:
    """Whether a server's log or output says it could not bind its port.

    strerror(EADDRINUSE) is what PostgreSQL, PgBouncer, nginx and uvicorn all print (uvicorn in lower case).
    """
    return "address already in use" in output.lower()


def start_on_free_port(start: Callable[[int], Server]) -> Server:
    """``start(port)`` with a :func:`free_port`; again with a new port while it raises :class:`PortTaken`.

    ``start`` must leave nothing running when it raises (its server process exited: it could not bind).
    The last attempt's :class:`PortTaken` propagates.
    """
    for attempt in range(1, BIND_ATTEMPTS + 1):
        try:
            return start(free_port())
        except PortTaken:
            if attempt == BIND_ATTEMPTS:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover
