"""What the pool cannot do identically goes to urllib.request.urlopen, unchanged; each route is counted."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from db_utils.http import http_stats, urlopen
from testservers.http import Certificates, PoolTestServer, outcome

pytestmark = pytest.mark.usefixtures("fresh_http_pool")


def fallbacks(reason: str) -> int:
    return int(http_stats()["fallbacks"].get(reason, 0))


@pytest.fixture
def no_installed_opener() -> Iterator[None]:
    urllib.request.install_opener(None)
    yield
    urllib.request.install_opener(None)


def test_other_schemes_go_to_urllib(tmp_path: Path) -> None:
    path = tmp_path / "page.txt"
    path.write_bytes(b"from a file")
    before = fallbacks("scheme")
    for url in (path.as_uri(), "data:text/plain;base64,aGVsbG8="):
        assert outcome(urlopen, url) == outcome(urllib.request.urlopen, url)
    assert urlopen(path.as_uri()).read() == b"from a file"
    assert fallbacks("scheme") - before == 3


def test_invalid_url_fails_exactly_like_urllib() -> None:
    assert outcome(urlopen, "not a url") == outcome(urllib.request.urlopen, "not a url")


@pytest.mark.usefixtures("no_installed_opener")
def test_installed_opener_is_used(http_server: PoolTestServer) -> None:
    class Tagging(urllib.request.BaseHandler):
        def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
            request.add_header("X-Opener", "custom")
            return request

    urllib.request.install_opener(urllib.request.build_opener(Tagging()))
    before = fallbacks("opener")
    with urlopen(http_server.url + "/echo") as response:
        assert dict(json.load(response)["headers"])["X-Opener"] == "custom"
    assert fallbacks("opener") - before == 1


@pytest.mark.usefixtures("no_installed_opener")
def test_urllibs_own_default_opener_does_not_disable_pooling(http_server: PoolTestServer) -> None:
    urllib.request.urlopen(http_server.url + "/echo").close()  # makes urllib store its default opener
    assert urllib.request._opener is not None  # type: ignore[attr-defined]
    before = http_stats()
    for _ in range(3):
        urlopen(http_server.url + "/echo").read()
    assert http_stats()["reuses"] - before["reuses"] == 2
    assert http_stats()["fallbacks"] == before["fallbacks"]


def test_environment_proxy_goes_to_urllib(
    http_server_factory: object, fresh_http_pool: pytest.MonkeyPatch
) -> None:
    proxy = http_server_factory()  # type: ignore[operator]
    fresh_http_pool.setenv("http_proxy", proxy.url)
    before = fallbacks("proxy")
    # The proxy answers itself; the target name is only text in the request line and is never resolved.
    with urlopen("http://service.invalid/echo") as response:
        echoed = json.load(response)
    assert echoed["proxied"] is True
    assert echoed["path"] == "http://service.invalid/echo"
    assert fallbacks("proxy") - before == 1


def test_no_proxy_bypass_keeps_pooling(
    http_server: PoolTestServer, fresh_http_pool: pytest.MonkeyPatch
) -> None:
    fresh_http_pool.setenv("http_proxy", "http://127.0.0.1:9")  # would fail if it were used
    fresh_http_pool.setenv("no_proxy", "127.0.0.1")
    before = fallbacks("proxy")
    for _ in range(3):
        with urlopen(http_server.url + "/echo") as response:
            assert json.load(response)["proxied"] is False
    assert http_server.connections_accepted == 1
    assert fallbacks("proxy") == before


def test_cafile_goes_to_urllib(https_server: PoolTestServer, tls_certs: Certificates) -> None:
    before = fallbacks("cafile")
    with pytest.warns(DeprecationWarning, match="cafile"):
        response = urlopen(https_server.url + "/echo", cafile=str(tls_certs.ca_pem))
    with response:
        assert json.load(response)["path"] == "/echo"
    assert fallbacks("cafile") - before == 1
    with (
        pytest.raises(ValueError, match="both context and any of cafile"),
        pytest.warns(DeprecationWarning, match="cafile"),
    ):
        urlopen(https_server.url + "/echo", cafile=str(tls_certs.ca_pem), context=tls_certs.client_context())
