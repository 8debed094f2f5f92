"""Keep-alive reuse, dead connections, partial reads, threads, settings, stats and fork safety."""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

import db_utils.http
from db_utils.config import ConfigError
from db_utils.http import http_stats, urlopen
from db_utils.stats import collect
from testservers.http import PoolTestServer, pattern

pytestmark = pytest.mark.usefixtures("fresh_http_pool")


def delta(before: dict[str, Any], key: str) -> int:
    return int(http_stats()[key]) - int(before[key])


def get_json(url: str, data: bytes | None = None) -> dict[str, object]:
    with urlopen(url, data) as response:
        return json.load(response)  # type: ignore[no-any-return]


def test_sequential_requests_share_one_connection(http_server: PoolTestServer) -> None:
    before = http_stats()
    seen = [get_json(http_server.url + "/echo") for _ in range(20)]
    assert http_server.connections_accepted == 1
    assert [s["request_no"] for s in seen] == list(range(1, 21))
    assert delta(before, "connections_created") == 1
    assert delta(before, "reuses") == 19
    assert delta(before, "requests") == 20


def test_http_figures_appear_in_pool_status(http_server: PoolTestServer) -> None:
    import db_utils

    before = db_utils.pool_status()["http"]
    for _ in range(3):
        get_json(http_server.url + "/echo")
    after = db_utils.pool_status()["http"]
    assert after["requests"] - before["requests"] == 3
    assert after["reuses"] - before["reuses"] >= 2
    assert "http" in db_utils.pool_status_line()


def test_redirect_hops_reuse_the_connection(http_server: PoolTestServer) -> None:
    assert get_json(http_server.url + "/chain/5")["path"] == "/chain/0"
    assert http_server.connections_accepted == 1


def test_error_responses_and_posts_reuse_too(http_server: PoolTestServer) -> None:
    for _ in range(3):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urlopen(http_server.url + "/status/404")
        assert caught.value.read() == b"status 404"
        caught.value.close()
        get_json(http_server.url + "/echo", b"x=1")
    assert http_server.connections_accepted == 1


@pytest.mark.parametrize("path", ["/bytes/200000", "/chunked/200000?size=4096"])
def test_partial_read_then_close_does_not_poison_the_pool(http_server: PoolTestServer, path: str) -> None:
    before = http_stats()
    response = urlopen(http_server.url + path)
    assert response.read(10) == pattern(10)
    response.close()
    assert delta(before, "discarded") == 1
    echoed = get_json(http_server.url + "/echo")  # must not read the leftover body as a response
    assert echoed["path"] == "/echo"
    with urlopen(http_server.url + path) as response:
        assert response.read() == pattern(200000)


def test_partial_read_with_a_blocking_pool_of_one_does_not_deadlock(
    http_server: PoolTestServer, fresh_http_pool: pytest.MonkeyPatch
) -> None:
    fresh_http_pool.setenv("HTTP_POOL_MAXSIZE", "1")
    fresh_http_pool.setenv("HTTP_POOL_BLOCK", "true")
    db_utils.http.dispose()
    for _ in range(3):
        response = urlopen(http_server.url + "/bytes/100000", timeout=5)
        response.read(5)
        response.close()
    dropped = urlopen(http_server.url + "/bytes/100000", timeout=5)
    del dropped  # never closed: garbage collection must hand the slot back
    assert get_json(http_server.url + "/echo")["path"] == "/echo"


def test_server_closing_idle_connections_is_transparent(
    http_server_factory: Callable[..., PoolTestServer],
) -> None:
    server = http_server_factory(idle_timeout=0.05)
    assert get_json(server.url + "/echo")["request_no"] == 1
    assert server.wait_closed(1)  # the server hung up on our idle pooled connection
    assert get_json(server.url + "/echo")["request_no"] == 1
    assert server.wait_closed(2)
    assert get_json(server.url + "/echo", b"post=1")["method"] == "POST"  # POSTs too: detected before sending
    assert server.connections_accepted == 3


def test_close_without_announcing_it_is_transparent(http_server: PoolTestServer) -> None:
    for expected_closed in (1, 2, 3):
        with urlopen(http_server.url + "/close-after") as response:
            assert response.read() == b"closing silently"
        assert http_server.wait_closed(expected_closed)
    assert get_json(http_server.url + "/echo", b"a=1")["body"] == "a=1"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_dead_reused_connection_is_retried_once_for_idempotent_methods(
    http_server: PoolTestServer, method: str
) -> None:
    url = http_server.url + "/drop-if-reused"
    data = b"same" if method == "PUT" else None
    before = http_stats()
    first = urllib.request.Request(url, data=data, method=method)
    assert get_json_request(first)["request_no"] == 1
    # the pooled connection is still open, the server drops it only when the next request arrives
    second = urllib.request.Request(url, data=data, method=method)
    assert get_json_request(second)["request_no"] == 1  # answered on a new connection
    assert delta(before, "stale_retries") == 1
    assert [r.method for r in http_server.requests_for("/drop-if-reused")] == [method] * 3
    assert http_server.connections_accepted == 2


def get_json_request(request: urllib.request.Request) -> dict[str, object]:
    with urlopen(request) as response:
        return json.load(response)  # type: ignore[no-any-return]


def test_non_idempotent_request_is_never_resent(http_server: PoolTestServer) -> None:
    url = http_server.url + "/drop-if-reused"
    before = http_stats()
    get_json(url, b"first")
    with pytest.raises(ConnectionError):  # what urllib raises when a server hangs up without answering
        urlopen(url, b"second")
    bodies = [r.body for r in http_server.requests_for("/drop-if-reused")]
    assert bodies == [b"first", b"second"]  # "second" reached the server exactly once
    assert delta(before, "stale_retries") == 0


def test_a_fresh_connection_that_fails_is_not_retried(http_server: PoolTestServer) -> None:
    # The timeout always expires (the server answers /slow only after release). On a busy machine it may
    # expire before the server has even read the request, so the server's count is waited for, and the
    # client's own figures (counted synchronously, before urlopen raises) prove that nothing was resent.
    http_server.release.clear()
    before = http_stats()
    with pytest.raises(TimeoutError):
        urlopen(http_server.url + "/slow", timeout=0.05)
    assert delta(before, "requests") == 1
    assert delta(before, "connections_created") == 1
    assert delta(before, "stale_retries") == 0
    assert http_server.arrived.wait(10)  # the one request reached the server
    http_server.release.set()
    assert len(http_server.requests_for("/slow")) == 1


def test_32_threads_share_the_pool_without_pool_full_warnings(
    http_server: PoolTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="urllib3")
    failures: list[BaseException] = []
    start = threading.Barrier(32)

    def worker(number: int) -> None:
        try:
            start.wait()
            for i in range(10):
                echoed = get_json(http_server.url + f"/echo?t={number}&i={i}", f"{number}-{i}".encode())
                assert echoed["body"] == f"{number}-{i}"
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert http_server.connections_accepted <= 32
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert http_stats()["reuses"] >= 320 - 32


def test_pool_size_and_blocking_come_from_the_environment(
    http_server: PoolTestServer, fresh_http_pool: pytest.MonkeyPatch
) -> None:
    fresh_http_pool.setenv("HTTP_POOL_MAXSIZE", "2")
    fresh_http_pool.setenv("HTTP_POOL_BLOCK", "true")
    db_utils.http.dispose()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                get_json(http_server.url + "/echo")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert http_server.connections_accepted <= 2
    assert http_stats()["maxsize"] == 2
    assert http_stats()["block"] is True


@pytest.mark.parametrize(
    ("name", "value"),
    [("HTTP_POOL_MAXSIZE", "lots"), ("HTTP_POOL_MAXSIZE", "0"), ("HTTP_POOL_BLOCK", "maybe")],
)
def test_bad_settings_name_the_variable(
    http_server: PoolTestServer, fresh_http_pool: pytest.MonkeyPatch, name: str, value: str
) -> None:
    fresh_http_pool.setenv(name, value)
    db_utils.http.dispose()
    with pytest.raises(ConfigError, match=name):
        urlopen(http_server.url + "/echo")
    assert http_server.requests_for("/echo") == []  # nothing was sent


def test_kill_switch_sends_everything_to_urllib(
    http_server: PoolTestServer, fresh_http_pool: pytest.MonkeyPatch
) -> None:
    fresh_http_pool.setenv("HTTP_POOL_ENABLED", "false")
    db_utils.http.dispose()
    before = http_stats()
    for _ in range(3):
        get_json(http_server.url + "/echo")
    assert http_server.connections_accepted == 3
    assert http_stats()["fallbacks"].get("disabled", 0) - before["fallbacks"].get("disabled", 0) == 3


def test_stats_are_registered_for_pool_status(http_server: PoolTestServer) -> None:
    get_json(http_server.url + "/echo")
    get_json(http_server.url + "/echo")
    figures = collect()["http"]
    assert figures["requests"] >= 2
    assert figures["reuses"] >= 1
    assert 0 < figures["reuse_rate"] <= 1
    assert figures["pools"] == 1
    assert set(figures) >= {
        "calls",
        "connections_created",
        "fallbacks",
        "stale_retries",
        "discarded",
        "maxsize",
    }
    json.dumps(figures)  # serialisable, as pool_status() promises


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_reuse_the_parents_socket(http_server: PoolTestServer) -> None:
    parent_conn = get_json(http_server.url + "/echo")["conn_id"]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the connection id the server saw, then leave without pytest's cleanup
        try:
            os.close(read_end)
            conn_id = get_json(http_server.url + "/echo")["conn_id"]
            os.write(write_end, str(conn_id).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child_conn = int(pipe.read() or "0")
    os.waitpid(pid, 0)
    assert child_conn not in (0, parent_conn)
    assert get_json(http_server.url + "/echo")["conn_id"] == parent_conn  # the parent's socket is intact
