"""db_utils.http.urlopen behaves like urllib.request.urlopen: each case runs both against the same server.

Outcomes are compared with testservers.http.outcome, which allows only the connection identity and the
``Connection: close`` header urllib forces to differ.
"""

from __future__ import annotations

import inspect
import io
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from db_utils.http import urlopen
from testservers.http import PoolTestServer, outcome, pattern

pytestmark = pytest.mark.usefixtures("fresh_http_pool")


def both(*args: object, **kwargs: object) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    return outcome(urllib.request.urlopen, *args, **kwargs), outcome(urlopen, *args, **kwargs)


def test_signature_matches_the_running_pythons_urlopen() -> None:
    def shape(fn: object) -> list[tuple[str, object, object]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]  # type: ignore[arg-type]

    assert shape(urlopen) == shape(urllib.request.urlopen)


# -- requests: str URLs, Request objects, data, headers ---------------------------------------------------
def test_str_url_get_sends_urllibs_default_headers(http_server: PoolTestServer) -> None:
    expected, actual = both(http_server.url + "/echo?q=1#fragment")
    assert actual == expected
    assert actual[0] == "ok"
    headers = dict(actual[4]["headers"])
    assert headers["User-Agent"].startswith("Python-urllib/")
    assert headers["Accept-Encoding"] == "identity"
    assert headers["Host"] == f"127.0.0.1:{http_server.port}"
    assert actual[4]["path"] == "/echo?q=1"


def test_data_makes_a_form_post(http_server: PoolTestServer) -> None:
    expected, actual = both(http_server.url + "/echo", b"a=1&b=2")
    assert actual == expected
    echoed = actual[4]
    assert echoed["method"] == "POST"
    assert echoed["body"] == "a=1&b=2"
    assert dict(echoed["headers"])["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(echoed["headers"])["Content-Length"] == "7"


def test_str_data_is_rejected_like_urllib(http_server: PoolTestServer) -> None:
    expected, actual = both(http_server.url + "/echo", "text")
    assert actual == expected
    assert actual[1] is TypeError


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_request_object_method_headers_and_body(http_server: PoolTestServer, method: str) -> None:
    def make() -> urllib.request.Request:
        return urllib.request.Request(
            http_server.url + "/echo",
            data=b'{"k": 1}' if method in ("PUT", "PATCH") else None,
            headers={"Content-Type": "application/json", "x-custom-thing": "v"},
            method=method,
        )

    expected, actual = outcome(urllib.request.urlopen, make()), outcome(urlopen, make())
    assert actual == expected
    assert actual[4]["method"] == method
    assert dict(actual[4]["headers"])["X-Custom-Thing"] == "v"


def test_get_method_override_and_unverifiable_flag(http_server: PoolTestServer) -> None:
    class PurgeRequest(urllib.request.Request):
        def get_method(self) -> str:
            return "PURGE"

    def make() -> urllib.request.Request:
        return PurgeRequest(http_server.url + "/echo", unverifiable=True)

    expected, actual = outcome(urllib.request.urlopen, make()), outcome(urlopen, make())
    assert actual == expected
    assert actual[4]["method"] == "PURGE"
    request = make()
    urlopen(request).close()
    assert request.unverifiable is True


def test_data_argument_overrides_the_requests_data(http_server: PoolTestServer) -> None:
    request = urllib.request.Request(http_server.url + "/echo", data=b"old")
    with urlopen(request, b"new") as response:
        assert json.load(response)["body"] == "new"
    assert request.data == b"new"  # urllib stores it on the Request too


@pytest.mark.parametrize("body_kind", ["file", "iterable"])
def test_streamed_bodies_are_sent_chunked_like_urllib(http_server: PoolTestServer, body_kind: str) -> None:
    def body() -> object:
        return io.BytesIO(b"streamed body") if body_kind == "file" else iter([b"streamed ", b"body"])

    expected = outcome(urllib.request.urlopen, http_server.url + "/echo", body())
    actual = outcome(urlopen, http_server.url + "/echo", body())
    assert actual == expected
    assert actual[4]["body"] == "streamed body"
    assert dict(actual[4]["headers"])["Transfer-Encoding"] == "chunked"


# -- responses --------------------------------------------------------------------------------------------
def test_response_api(http_server: PoolTestServer) -> None:
    url = http_server.url + "/lines/5"
    with urllib.request.urlopen(url) as stock, urlopen(url) as pooled:
        for response in (stock, pooled):
            assert response.status == 200
            assert response.getcode() == 200
            assert response.code == 200
            assert response.reason == "OK"
            assert response.msg == "OK"
            assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert response.info() is response.headers
            assert response.headers.get_content_charset() == "utf-8"
            assert response.getheader("content-type") == "text/plain; charset=utf-8"
            assert response.geturl() == url
            assert response.url == url
            assert response.version == 11
            assert not response.closed
        assert pooled.readline() == stock.readline() == b"line 0\n"
        assert pooled.read(3) == stock.read(3) == b"lin"
        assert list(pooled) == list(stock)
        assert pooled.read() == stock.read() == b""
    assert pooled.closed
    assert stock.closed


@pytest.mark.parametrize("path", ["/bytes/70000", "/chunked/70000?size=999"])
def test_body_reads_by_size_and_to_the_end(http_server: PoolTestServer, path: str) -> None:
    with urlopen(http_server.url + path) as response:
        head = response.read(100)
        rest = response.read()
    assert head + rest == pattern(70000)
    with urlopen(http_server.url + path) as response:
        assert response.read(-1) == pattern(
            70000
        )  # negative means "everything", not "until the socket closes"
    with urlopen(http_server.url + path) as response:
        buffer = bytearray(500)
        assert response.readinto(buffer) > 0
        assert response.read1(10)


def test_text_wrappers_work_on_the_response(http_server: PoolTestServer) -> None:
    with urlopen(http_server.url + "/lines/3") as response:
        assert io.TextIOWrapper(response, encoding="utf-8").read() == "line 0\nline 1\nline 2\n"


def test_duplicate_headers_are_kept(http_server: PoolTestServer) -> None:
    with (
        urlopen(http_server.url + "/dup-headers") as pooled,
        urllib.request.urlopen(http_server.url + "/dup-headers") as stock,
    ):
        assert pooled.headers.get_all("Set-Cookie") == stock.headers.get_all("Set-Cookie") == ["a=1", "b=2"]


def test_head_request_has_an_empty_body(http_server: PoolTestServer) -> None:
    request = urllib.request.Request(http_server.url + "/bytes/10", method="HEAD")
    with urlopen(request) as response:
        assert response.headers["Content-Length"] == "10"
        assert response.read() == b""


# -- errors -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", [201, 204, 300, 304, 400, 401, 404, 418, 500, 503])
def test_status_codes_match_urllib(http_server: PoolTestServer, code: int) -> None:
    expected, actual = both(f"{http_server.url}/status/{code}")
    assert actual == expected
    assert actual[0] == ("ok" if code < 300 else "HTTPError")


def test_http_error_is_urllibs_class_with_readable_body(http_server: PoolTestServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urlopen(http_server.url + "/status/500")
    error = caught.value
    assert error.code == 500
    assert error.status == 500
    assert error.reason == "Internal Server Error"
    assert error.headers["X-Status"] == "500"
    assert error.url == http_server.url + "/status/500"
    assert error.read() == b"status 500"
    error.close()
    # the connection went back to the pool once the error body was read
    with urlopen(http_server.url + "/echo") as response:
        assert json.load(response)["request_no"] == 2


def test_connection_refused_is_a_urlerror(unused_port: int) -> None:
    expected, actual = both(f"http://127.0.0.1:{unused_port}/")
    assert actual == expected
    assert actual[0] == "URLError"
    assert actual[1] is ConnectionRefusedError


def test_missing_host_and_bad_port_fail_like_urllib() -> None:
    for url in ("http:///path", "http://127.0.0.1:notaport/"):
        expected, actual = both(url)
        assert actual == expected


@pytest.fixture
def unused_port() -> Iterator[int]:
    """A port with nothing listening: bound (so nobody else takes it) but never listen()ed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


# -- timeouts ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opener", [urllib.request.urlopen, urlopen], ids=["urllib", "pool"])
def test_timeout_waiting_for_the_response_raises_timeouterror(
    http_server: PoolTestServer, opener: object
) -> None:
    with pytest.raises(TimeoutError):
        opener(http_server.url + "/slow", timeout=0.05)  # type: ignore[operator]
    http_server.release.set()


@pytest.mark.parametrize("opener", [urllib.request.urlopen, urlopen], ids=["urllib", "pool"])
def test_timeout_while_reading_the_body(http_server: PoolTestServer, opener: object) -> None:
    response = open_before_the_timeout(opener, http_server.url + "/slow-body")
    with pytest.raises(TimeoutError):
        response.read()  # the body comes only after release: this timeout always expires
    response.close()
    http_server.release.set()


def open_before_the_timeout(opener: Any, url: str) -> Any:
    """``opener(url, timeout=t)`` for the first t (doubling from 0.05 s) within which the headers came.

    The server sends /slow-body's headers at once, but a busy machine may delay them past a short
    timeout; then urlopen itself times out, which is not what the test is about. The timeout stays short
    where it must expire (the body).
    """
    timeout = 0.05
    while True:
        try:
            return opener(url, timeout=timeout)
        except (TimeoutError, urllib.error.URLError) as error:
            timed_out = isinstance(getattr(error, "reason", error), TimeoutError)
            if not timed_out or timeout > 10:
                raise
            timeout *= 2


@pytest.mark.parametrize("opener", [urllib.request.urlopen, urlopen], ids=["urllib", "pool"])
def test_omitted_timeout_uses_the_global_default(
    http_server: PoolTestServer, opener: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "_GLOBAL_DEFAULT_TIMEOUT", socket._GLOBAL_DEFAULT_TIMEOUT)  # type: ignore[attr-defined]
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.05)
    try:
        with pytest.raises(TimeoutError):
            opener(http_server.url + "/slow")  # type: ignore[operator]
    finally:
        socket.setdefaulttimeout(previous)
        http_server.release.set()


def test_explicit_none_timeout_ignores_the_global_default(http_server: PoolTestServer) -> None:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.01)
    try:
        http_server.release.set()  # answers at once; a 0.01 s default would still be the socket's timeout
        with urlopen(http_server.url + "/slow", timeout=None) as response:
            assert response.fp.raw._sock.gettimeout() is None
            assert response.read() == b"finally"
    finally:
        socket.setdefaulttimeout(previous)


def test_timeout_applies_to_a_reused_connection_and_the_late_answer_is_not_read_later(
    http_server: PoolTestServer,
) -> None:
    with urlopen(http_server.url + "/echo", timeout=5) as response:
        response.read()
    with pytest.raises(TimeoutError):
        urlopen(http_server.url + "/slow", timeout=0.05)
    http_server.release.set()
    with urlopen(http_server.url + "/echo", timeout=5) as response:
        assert json.load(response)["path"] == "/echo"  # not the /slow answer left on the old socket


# -- redirects --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT"])
def test_redirects_follow_urllibs_rules(http_server: PoolTestServer, code: int, method: str) -> None:
    def make() -> urllib.request.Request:
        data = b"payload" if method in ("POST", "PUT") else None
        return urllib.request.Request(f"{http_server.url}/redirect/{code}?to=/echo", data=data, method=method)

    expected, actual = outcome(urllib.request.urlopen, make()), outcome(urlopen, make())
    assert actual == expected
    if method == "POST" and code in (301, 302, 303):
        assert actual[3] == http_server.url + "/echo"  # geturl() shows the final URL
        assert actual[4]["method"] == "GET"
        assert actual[4]["body"] == ""
    if method in ("PUT",) or (method == "POST" and code in (307, 308)):
        assert actual[0] == "HTTPError"
        assert actual[1] == code


def test_redirect_loop_and_too_many_redirects(http_server: PoolTestServer) -> None:
    for path in ("/loop", "/chain/11"):
        expected, actual = both(http_server.url + path)
        assert actual == expected
        assert actual[0] == "HTTPError"
    expected, actual = both(http_server.url + "/chain/10")
    assert actual == expected
    assert actual[0] == "ok"


def test_redirect_to_another_server(http_server: PoolTestServer, http_server_factory: object) -> None:
    other = http_server_factory()  # type: ignore[operator]
    target = other.url + "/echo"
    expected, actual = both(f"{http_server.url}/redirect/302?to={target}")
    assert actual == expected
    assert actual[3] == target
