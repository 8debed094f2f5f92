"""The direct path (db_utils.http.direct): which calls take it, which go to urllib, and its keep-alive rules.

A call urllib serves itself is recognisable on the wire: urllib always sends ``Connection: close``, the pool
never does. A call that goes through urllib's opener with the urllib3 transport instead of the direct path
is counted in ``http_stats()["opener_path"]`` by reason.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import db_utils.http
from db_utils.http import http_stats, urlopen
from db_utils.http.route import new_request
from testservers.http import Certificates, PoolTestServer, outcome

pytestmark = pytest.mark.usefixtures("fresh_http_pool")


def echo(url: str | urllib.request.Request, **kwargs: Any) -> dict[str, Any]:
    with urlopen(url, **kwargs) as response:
        return json.load(response)  # type: ignore[no-any-return]


def connection_header(echoed: dict[str, Any]) -> str | None:
    return dict(echoed["headers"]).get("Connection")


def counted(tally: str, reason: str, before: dict[str, Any]) -> int:
    """Calls counted under ``tally[reason]`` since ``before`` (the counters are process-wide)."""
    return int(http_stats()[tally].get(reason, 0)) - int(before[tally].get(reason, 0))


# -- the direct path serves the common call ------------------------------------------------------------
@pytest.mark.parametrize("as_request", [False, True], ids=["str", "Request"])
def test_common_calls_take_the_direct_path(http_server: PoolTestServer, as_request: bool) -> None:
    before = http_stats()
    for _ in range(3):
        url = http_server.url + "/echo"
        echoed = echo(urllib.request.Request(url) if as_request else url)
        assert connection_header(echoed) is None  # pooled: keep-alive
    after = http_stats()
    assert after["opener_path"] == before["opener_path"]
    assert after["fallbacks"] == before["fallbacks"]
    assert http_server.connections_accepted == 1


def test_https_takes_the_direct_path(https_server: PoolTestServer, tls_certs: Certificates) -> None:
    context = tls_certs.client_context()
    before = http_stats()
    for _ in range(3):
        assert connection_header(echo(https_server.url + "/echo", context=context)) is None
    assert http_stats()["opener_path"] == before["opener_path"]
    assert https_server.connections_accepted == 1


# -- each condition that sends the call elsewhere ------------------------------------------------------
def test_non_http_url_goes_to_urllib() -> None:
    before = http_stats()
    with urlopen("data:text/plain,hello") as response:
        assert response.read() == b"hello"
    assert counted("fallbacks", "scheme", before) == 1


def test_installed_opener_goes_to_urllib(http_server: PoolTestServer) -> None:
    before = http_stats()
    urllib.request.install_opener(urllib.request.build_opener(urllib.request.HTTPCookieProcessor()))
    assert connection_header(echo(http_server.url + "/echo")) == "close"
    assert counted("fallbacks", "opener", before) == 1


def test_applicable_proxy_goes_to_urllib(
    http_server: PoolTestServer, fresh_http_pool: pytest.MonkeyPatch
) -> None:
    before = http_stats()
    fresh_http_pool.setenv("http_proxy", http_server.url)
    echoed = echo("http://service.invalid/echo")
    assert echoed["proxied"] is True
    assert connection_header(echoed) == "close"
    assert counted("fallbacks", "proxy", before) == 1


def test_cafile_goes_to_urllib(https_server: PoolTestServer, tls_certs: Certificates) -> None:
    before = http_stats()
    with pytest.warns(DeprecationWarning, match="cafile"):
        echoed = echo(https_server.url + "/echo", cafile=str(tls_certs.ca_pem))
    assert connection_header(echoed) == "close"
    assert counted("fallbacks", "cafile", before) == 1


def test_kill_switch_goes_to_urllib(http_server: PoolTestServer, fresh_http_pool: pytest.MonkeyPatch) -> None:
    before = http_stats()
    fresh_http_pool.setenv("HTTP_POOL_ENABLED", "false")
    db_utils.http.dispose()
    assert connection_header(echo(http_server.url + "/echo")) == "close"
    assert counted("fallbacks", "disabled", before) == 1


@pytest.mark.parametrize("method", ["PROPFIND", "PURGE"])
def test_non_standard_method_goes_through_urllibs_opener(http_server: PoolTestServer, method: str) -> None:
    before = http_stats()
    request = urllib.request.Request(http_server.url + "/echo", method=method)
    echoed = echo(request)
    assert echoed["method"] == method
    assert connection_header(echoed) is None  # still pooled, by urllib3
    assert "Content-Length" not in dict(echoed["headers"])  # as urllib sends it
    assert counted("opener_path", "method", before) == 1


def test_blocking_pool_goes_through_urllibs_opener(
    http_server: PoolTestServer, fresh_http_pool: pytest.MonkeyPatch
) -> None:
    before = http_stats()
    fresh_http_pool.setenv("HTTP_POOL_BLOCK", "true")
    db_utils.http.dispose()
    echo(http_server.url + "/echo")
    echo(http_server.url + "/echo")
    assert counted("opener_path", "block", before) == 2
    assert http_server.connections_accepted == 1


def test_request_with_its_own_proxy_goes_through_urllibs_opener(http_server: PoolTestServer) -> None:
    before = http_stats()

    def make() -> urllib.request.Request:
        request = urllib.request.Request("http://service.invalid/echo")
        request.set_proxy(http_server.url.removeprefix("http://"), "http")
        return request

    assert outcome(urlopen, make()) == outcome(urllib.request.urlopen, make())
    echoed = echo(make())
    assert echoed["proxied"] is True
    assert counted("opener_path", "request-proxy", before) == 2


def test_a_vcrpy_cassette_records_and_replays_migrated_calls(
    http_server_factory: Callable[..., PoolTestServer], tmp_path: Path
) -> None:
    """vcrpy replaces http.client's connection classes, which urllib's handlers look up per call."""
    import vcr  # type: ignore[import-untyped]

    server = http_server_factory()
    before = http_stats()
    cassette = str(tmp_path / "cassette.yaml")
    with vcr.use_cassette(cassette) as recorded:
        recorded_body = echo(server.url + "/echo")
    assert len(recorded) == 1
    assert counted("fallbacks", "http-client-patched", before) == 1
    server.stop()  # the replay must not need it
    with vcr.use_cassette(cassette, record_mode="none") as replayed:
        assert echo(server.url + "/echo") == recorded_body
    assert replayed.play_count == 1


def test_a_mock_of_the_openers_open_sees_the_call(http_server: PoolTestServer) -> None:
    before = http_stats()
    with mock.patch.object(urllib.request.OpenerDirector, "open") as stand_in:
        assert urlopen(http_server.url + "/echo", timeout=3) is stand_in.return_value
    assert counted("opener_path", "opener-patched", before) == 1
    assert http_server.connections_accepted == 0


def test_instrumentation_wrapping_the_openers_dispatch_sees_pooled_calls(
    http_server: PoolTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What OpenTelemetry's urllib instrumentation does: wrap ``OpenerDirector._open``, call through."""
    traced: list[str] = []
    dispatch = urllib.request.OpenerDirector._open  # type: ignore[attr-defined]

    @functools.wraps(dispatch)
    def tracing(self: urllib.request.OpenerDirector, req: urllib.request.Request, data: Any = None) -> Any:
        traced.append(req.full_url)
        return dispatch(self, req, data)

    monkeypatch.setattr(urllib.request.OpenerDirector, "_open", tracing)
    before = http_stats()
    for _ in range(3):
        assert connection_header(echo(http_server.url + "/echo")) is None  # pooled, by urllib3
    assert traced == [http_server.url + "/echo"] * 3
    assert counted("opener_path", "opener-patched", before) == 3
    assert http_server.connections_accepted == 1


# -- keep-alive bookkeeping of the direct path -----------------------------------------------------------
def test_idle_connections_beyond_maxsize_are_closed(
    http_server: PoolTestServer, fresh_http_pool: pytest.MonkeyPatch
) -> None:
    fresh_http_pool.setenv("HTTP_POOL_MAXSIZE", "1")
    db_utils.http.dispose()
    url = http_server.url + "/echo"
    first, second = urlopen(url), urlopen(url)  # two at once: two connections
    first.read(), second.read()
    first.close(), second.close()  # only one of them is kept
    assert http_server.wait_closed(1)
    third, fourth = urlopen(url), urlopen(url)
    assert {json.load(third)["request_no"], json.load(fourth)["request_no"]} == {1, 2}
    third.close(), fourth.close()
    assert http_server.connections_accepted == 3


def test_least_recently_used_host_is_dropped_beyond_num_pools(
    http_server_factory: Callable[..., PoolTestServer], fresh_http_pool: pytest.MonkeyPatch
) -> None:
    fresh_http_pool.setenv("HTTP_POOL_NUM_POOLS", "1")
    db_utils.http.dispose()
    first, second = http_server_factory(), http_server_factory()
    echo(first.url + "/echo")
    echo(second.url + "/echo")  # evicts first's idle connection
    assert first.wait_closed(1)
    assert echo(first.url + "/echo")["request_no"] == 1
    assert http_stats()["pools"] == 1


def test_a_response_open_during_dispose_is_not_pooled_afterwards(http_server: PoolTestServer) -> None:
    response = urlopen(http_server.url + "/echo")
    db_utils.http.dispose()
    assert json.load(response)["request_no"] == 1
    response.close()
    assert http_server.wait_closed(1)
    assert echo(http_server.url + "/echo")["request_no"] == 1


def test_a_post_on_a_connection_closed_while_idle_is_sent_on_a_new_one(
    http_server_factory: Callable[..., PoolTestServer],
) -> None:
    server = http_server_factory(idle_timeout=0.05)
    before = http_stats()
    echo(server.url + "/echo")
    assert server.wait_closed(1)  # the server hung up on the idle connection
    assert echo(server.url + "/echo", data=b"once")["body"] == "once"
    assert [r.body for r in server.requests_for("/echo")] == [b"", b"once"]
    assert http_stats()["stale_retries"] == before["stale_retries"]  # detected before sending, not retried


# -- the delayed-ACK stall ---------------------------------------------------------------------------------
STALL_FLOOR = 0.030  # s; a stalled request waits for the peer's delayed-ACK timer, 40 ms at least on Linux


def request_times(send: Callable[[], bytes], count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        assert send()
        times.append(time.perf_counter() - start)
    return times


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's delayed-ACK timer")
def test_the_nagle_server_fixture_reproduces_the_stall(http_server_nagle: PoolTestServer) -> None:
    """The control: a plain kept-alive http.client connection stalls on every request but the first."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", http_server_nagle.port, timeout=10)

    def send() -> bytes:
        conn.request("GET", "/bytes/512")
        return conn.getresponse().read()

    try:
        times = request_times(send, 6)[1:]
    finally:
        conn.close()
    assert statistics.median(times) >= STALL_FLOOR


def test_kept_alive_requests_do_not_wait_for_a_delayed_ack(http_server_nagle: PoolTestServer) -> None:
    """A scheduler hiccup on a busy machine can slow one request, never the median of 31 by 30 ms."""

    def send() -> bytes:
        with urlopen(http_server_nagle.url + "/bytes/512", timeout=10) as response:
            return response.read()  # type: ignore[no-any-return]

    times = request_times(send, 31)
    assert http_server_nagle.connections_accepted == 1  # all of them on one kept-alive connection
    assert statistics.median(times) < STALL_FLOOR


def test_a_post_to_the_nagle_server_does_not_stall_either(http_server_nagle: PoolTestServer) -> None:
    def send() -> bytes:
        with urlopen(http_server_nagle.url + "/echo", data=b"x" * 100, timeout=10) as response:
            return response.read()  # type: ignore[no-any-return]

    times = request_times(send, 31)
    assert http_server_nagle.connections_accepted == 1
    assert statistics.median(times) < STALL_FLOOR


def test_urllibs_default_opener_changed_after_first_use_goes_to_urllib(http_server: PoolTestServer) -> None:
    """The stock-opener verdict is kept per opener, but a handler added to it later is seen at once."""
    urllib.request.urlopen(http_server.url + "/echo").close()  # urllib installs its default opener
    before = http_stats()
    assert connection_header(echo(http_server.url + "/echo")) is None  # judged stock: pooled

    class Tagging(urllib.request.BaseHandler):
        def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
            request.add_header("X-Opener", "changed")
            return request

    urllib.request._opener.add_handler(Tagging())  # type: ignore[attr-defined]
    echoed = echo(http_server.url + "/echo")
    assert dict(echoed["headers"])["X-Opener"] == "changed"
    assert counted("fallbacks", "opener", before) == 1


@pytest.mark.parametrize("reader", ["readline", "read1", "readinto", "iteration"])
def test_a_body_read_to_its_end_any_way_returns_the_connection(
    http_server: PoolTestServer, reader: str
) -> None:
    for _ in range(2):
        response = urlopen(http_server.url + "/lines/50")
        if reader == "readline":
            while response.readline():
                pass
        elif reader == "read1":
            while response.read1(7):
                pass
        elif reader == "readinto":
            buffer = bytearray(13)
            while response.readinto(buffer):
                pass
        else:
            assert len(list(response)) == 50
        assert response.isclosed()
        response.close()
    assert echo(http_server.url + "/echo")["request_no"] == 3
    assert http_server.connections_accepted == 1


def test_the_response_is_urllibs_class(http_server: PoolTestServer) -> None:
    import http.client

    with (
        urlopen(http_server.url + "/echo") as pooled,
        urllib.request.urlopen(http_server.url + "/echo") as stock,
    ):
        assert isinstance(pooled, type(stock))
        assert isinstance(pooled, http.client.HTTPResponse)
        assert (pooled.url, pooled.msg, pooled.status) == (stock.url, stock.msg, stock.status)


def test_a_dropped_half_read_response_closes_its_connection(http_server: PoolTestServer) -> None:
    import gc

    before = http_stats()
    response = urlopen(http_server.url + "/bytes/100000")
    assert len(response.read(10)) == 10
    del response  # never closed: garbage collection must close the connection, not pool it
    gc.collect()
    assert http_server.wait_closed(1)
    assert http_stats()["discarded"] - before["discarded"] == 1
    assert echo(http_server.url + "/echo")["request_no"] == 1  # a new connection, not the poisoned one


def test_a_refused_connection_is_counted_as_a_connect_failure() -> None:
    import socket as socket_module

    with socket_module.socket() as unused:  # bound, never listening: connections are refused
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/"
        before = http_stats()
        with pytest.raises(urllib.error.URLError) as caught:
            urlopen(url)
    assert isinstance(caught.value.reason, ConnectionRefusedError)
    assert http_stats()["connect_failures"] - before["connect_failures"] == 1
    assert http_stats()["opener_path"] == before["opener_path"]  # refused on the direct path


# -- the Request built from a URL string (route.new_request) ---------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/echo?q=1#frag",
        "https://Example.COM/a%20b/?x=%C3%A9",
        "http://user:pw@[::1]:8443/path;params?q",
        "http://127.0.0.1",
        "<URL:http://wrapped.example/x>",
    ],
)
def test_a_kept_request_equals_urllibs_own_every_time(url: str) -> None:
    first, second = new_request(url), new_request(url)  # built, then copied from what was kept
    for request in (first, second):
        assert vars(request) == vars(urllib.request.Request(url))
        assert type(request) is urllib.request.Request
    second.add_header("X-Once", "1")
    second.add_unredirected_header("Host", "elsewhere")
    assert vars(new_request(url)) == vars(urllib.request.Request(url))  # header dicts are never shared
    assert first.headers == {}
    assert first.unredirected_hdrs == {}


def test_an_invalid_url_raises_urllibs_error_every_time() -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="unknown url type"):
            new_request("no-scheme/path")


def test_a_patched_request_class_is_used_as_urllib_would(
    http_server: PoolTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = http_server.url + "/echo"
    new_request(url)  # kept for the stock class

    class Tagged(urllib.request.Request):
        pass

    monkeypatch.setattr(urllib.request, "Request", Tagged)
    assert type(new_request(url)) is Tagged
    assert echo(url)["path"] == "/echo"
