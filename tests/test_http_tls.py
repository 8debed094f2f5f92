"""HTTPS through the pool: context= semantics, certificate errors, per-context pools."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from db_utils.http import urlopen
from testservers.http import Certificates, PoolTestServer, make_certificates, outcome

pytestmark = pytest.mark.usefixtures("fresh_http_pool")


def test_verified_https_with_a_context_reuses_one_connection(
    https_server: PoolTestServer, tls_certs: Certificates
) -> None:
    context = tls_certs.client_context()
    expected = outcome(urllib.request.urlopen, https_server.url + "/echo", context=context)
    accepted_by_urllib = https_server.connections_accepted
    for _ in range(5):
        assert outcome(urlopen, https_server.url + "/echo", context=context) == expected
    assert https_server.connections_accepted - accepted_by_urllib == 1


def test_untrusted_certificate_is_a_urlerror_like_urllib(https_server: PoolTestServer) -> None:
    expected = outcome(urllib.request.urlopen, https_server.url + "/echo")
    actual = outcome(urlopen, https_server.url + "/echo")
    assert actual[:2] == expected[:2] == ("URLError", ssl.SSLCertVerificationError)


def test_unverified_context_works_without_warnings(https_server: PoolTestServer) -> None:
    context = ssl._create_unverified_context()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with urlopen(https_server.url + "/echo", context=context) as response:
            assert json.load(response)["method"] == "GET"
    assert [str(w.message) for w in caught] == []


def test_context_without_hostname_check_accepts_another_name(
    http_server_factory: Callable[..., PoolTestServer], tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path, hostnames=("other.invalid",))
    server = http_server_factory(tls=certs.server_context())
    strict = certs.client_context()
    expected = outcome(urllib.request.urlopen, server.url + "/echo", context=strict)
    assert outcome(urlopen, server.url + "/echo", context=strict)[:2] == expected[:2]
    assert expected[:2] == ("URLError", ssl.SSLCertVerificationError)

    lenient = certs.client_context()
    lenient.check_hostname = False  # still verifies the chain, just not the name: urllib accepts it
    expected = outcome(urllib.request.urlopen, server.url + "/echo", context=lenient)
    assert outcome(urlopen, server.url + "/echo", context=lenient) == expected
    assert expected[0] == "ok"


def test_different_contexts_never_share_a_connection(
    https_server: PoolTestServer, tls_certs: Certificates
) -> None:
    first, second = tls_certs.client_context(), tls_certs.client_context()
    ids = [
        json.load(urlopen(https_server.url + "/echo", context=context))["conn_id"]
        for context in (first, second, first, second)
    ]
    assert ids[0] != ids[1]
    assert ids[0] == ids[2]
    assert ids[1] == ids[3]


def test_default_context_factory_is_honoured(
    https_server: PoolTestServer, tls_certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(urllib.error.URLError):
        urlopen(https_server.url + "/echo")
    # the legacy idiom of swapping the module-level default factory, done after a first request
    monkeypatch.setattr(ssl, "_create_default_https_context", tls_certs.client_context)
    with urlopen(https_server.url + "/echo") as response:
        assert json.load(response)["path"] == "/echo"


def test_redirect_from_http_to_https_keeps_the_context(
    http_server: PoolTestServer, https_server: PoolTestServer, tls_certs: Certificates
) -> None:
    context = tls_certs.client_context()
    target = https_server.url + "/echo"
    url = f"{http_server.url}/redirect/302?to={target}"
    expected = outcome(urllib.request.urlopen, url, context=context)
    assert outcome(urlopen, url, context=context) == expected
    assert expected[3] == target
