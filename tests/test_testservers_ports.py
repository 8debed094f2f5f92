"""testservers.ports: every server that binds a port of its own survives losing the port race.

Each test takes the port :func:`testservers.ports.free_port` hands out first with a listening socket, as a
server started in parallel would between the pick and the server's own bind, and shows the server still
comes up, on the next port picked.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import testservers.ports
from testservers.http import pattern
from testservers.nginx import NginxUnavailable, find_nginx, start_nginx
from testservers.pgbouncer import launch_pgbouncer
from testservers.ports import BIND_ATTEMPTS, PortTaken, refused_port, start_on_free_port
from testservers.postgres import PostgresServer


class Picks:
    """The ports free_port() handed out, in order; the first ones are the ``taken`` ones."""

    def __init__(self, taken: list[int]) -> None:
        self.taken = taken
        self.handed: list[int] = []


@pytest.fixture
def picks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Picks]:
    """free_port() hands out a port a listening socket holds first, then real free ports."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield _hand_out(monkeypatch, [holder.getsockname()[1]])


def _hand_out(monkeypatch: pytest.MonkeyPatch, first: list[int]) -> Picks:
    picks = Picks(first)
    queued = iter(first)
    real_free_port = testservers.ports.free_port

    def free_port() -> int:
        picks.handed.append(next(queued, None) or real_free_port())
        return picks.handed[-1]

    monkeypatch.setattr(testservers.ports, "free_port", free_port)
    return picks


def test_refused_port_refuses_connections_and_cannot_be_taken_while_held() -> None:
    with refused_port() as port:
        for _ in range(3):  # every time, not just once
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=30).close()
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", port))


def test_start_on_free_port_gives_up_after_bind_attempts_with_the_last_error() -> None:
    tried: list[int] = []

    def always_taken(port: int) -> None:
        tried.append(port)
        raise PortTaken(f"attempt {len(tried)}")

    with pytest.raises(PortTaken, match=f"attempt {BIND_ATTEMPTS}"):
        start_on_free_port(always_taken)
    assert len(tried) == BIND_ATTEMPTS


def test_start_on_free_port_does_not_retry_other_failures() -> None:
    tried: list[int] = []

    def broken(port: int) -> None:
        tried.append(port)
        raise RuntimeError("bad configuration")

    with pytest.raises(RuntimeError, match="bad configuration"):
        start_on_free_port(broken)
    assert len(tried) == 1


def test_postgres_comes_up_on_another_port_when_the_first_is_taken(
    picks: Picks, postgres_factory: Callable[..., PostgresServer]
) -> None:
    server = postgres_factory(max_connections=5)
    assert picks.handed[0] == picks.taken[0]
    assert server.port == picks.handed[1]  # one more start, on the next port picked
    assert server.query("SELECT inet_server_port()") == [(server.port,)]


def test_postgres_gives_up_after_bind_attempts_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
    postgres_factory: Callable[..., PostgresServer],
    made_temp_dirs: list[str],
) -> None:
    """Every start loses the race: PortTaken with PostgreSQL's own words, and its directory is removed."""
    made = made_temp_dirs
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        picks = _hand_out(monkeypatch, [holder.getsockname()[1]] * BIND_ATTEMPTS)
        with pytest.raises(PortTaken, match=r"(?s)postgres exited .*Address already in use"):
            postgres_factory(max_connections=5)
    assert picks.handed == picks.taken
    assert len(made) == 1
    assert not Path(made[0]).exists()


def test_postgres_with_a_bad_setting_is_not_started_again(
    monkeypatch: pytest.MonkeyPatch, postgres_factory: Callable[..., PostgresServer]
) -> None:
    picks = _hand_out(monkeypatch, [])
    with pytest.raises(RuntimeError, match=r"(?s)postgres exited .*no_such_setting") as raised:
        postgres_factory(extra_settings={"no_such_setting": "1"})
    assert not isinstance(raised.value, PortTaken)
    assert len(picks.handed) == 1


def test_pgbouncer_comes_up_on_another_port_when_the_first_is_taken(
    postgres: PostgresServer, pgbouncer_binary: Path, picks: Picks
) -> None:
    server = launch_pgbouncer(postgres)
    try:
        assert picks.handed[0] == picks.taken[0]
        assert server.port == picks.handed[1]
        conn = server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_user")
                assert cur.fetchone() == (server.user,)
        finally:
            conn.close()
    finally:
        server.stop()
    assert postgres.query("SELECT count(*) FROM pg_roles WHERE rolname = %s", (server.user,)) == [(0,)]


def test_nginx_comes_up_on_another_port_when_the_first_is_taken(picks: Picks) -> None:
    try:
        find_nginx()
    except NginxUnavailable as missing:
        pytest.skip(str(missing))
    with start_nginx() as server:
        assert picks.handed[0] == picks.taken[0]
        assert server.port == picks.handed[1]
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.request("GET", "/bytes/512")
        assert conn.getresponse().read() == pattern(512)
        conn.close()
