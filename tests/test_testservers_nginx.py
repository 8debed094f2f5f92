"""testservers.nginx: the throwaway nginx the HTTP benchmark compares clients against.

Skipped when nginx is not installed (Debian package ``nginx-light``), like the benchmark itself.
"""

from __future__ import annotations

import http.client
import urllib.request
from pathlib import Path

import pytest

from db_utils.http import urlopen
from testservers.http import Certificates, pattern
from testservers.nginx import NginxUnavailable, find_nginx, launch_nginx, start_nginx

try:
    find_nginx()
except NginxUnavailable as missing:
    pytest.skip(str(missing), allow_module_level=True)


def test_serves_the_same_bytes_as_the_python_server_over_one_kept_alive_connection() -> None:
    with start_nginx() as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            for size in (512, 4096, 0):
                conn.request("GET", f"/bytes/{size}")
                response = conn.getresponse()
                assert (response.status, response.read()) == (200, pattern(size))
                assert response.getheader("Connection") == "keep-alive"
            assert conn.sock is not None  # never reconnected: the same socket served all three
        finally:
            conn.close()


def test_pooled_client_reuses_one_connection(fresh_http_pool: pytest.MonkeyPatch) -> None:
    from db_utils.http import http_stats

    with start_nginx() as server:
        before = http_stats()
        for _ in range(3):
            with urlopen(server.url + "/bytes/512", timeout=10) as response:
                assert response.read() == pattern(512)
        after = http_stats()
    assert after["connections_created"] - before["connections_created"] == 1
    assert after["reuses"] - before["reuses"] == 2


def test_https_with_the_given_certificate(tls_certs: Certificates) -> None:
    with start_nginx(tls=tls_certs) as server:
        assert server.url.startswith("https://127.0.0.1:")
        context = tls_certs.client_context()
        with urllib.request.urlopen(server.url + "/bytes/512", timeout=10, context=context) as response:
            assert response.read() == pattern(512)


def test_stop_ends_the_process_and_removes_every_file() -> None:
    server = launch_nginx()
    prefix: Path = server.prefix
    assert (prefix / "nginx.conf").exists()
    server.stop()
    assert server.process.returncode is not None
    assert not prefix.exists()
    server.stop()  # idempotent


def test_a_bad_configuration_fails_with_nginx_own_words_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tempfile

    import testservers.nginx

    monkeypatch.setattr(testservers.nginx, "render_config", lambda *args: "no_such_directive on;\n")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where launch_nginx makes its prefix
    with pytest.raises(RuntimeError, match=r"(?s)nginx exited .*no_such_directive"):
        launch_nginx()
    assert list(tmp_path.iterdir()) == []
