"""db_utils.http.urlopen vs urllib.request.urlopen vs a persistent http.client connection.

All three GET the same small response from a local keep-alive server on 127.0.0.1 (testservers.http),
once over plain HTTP and once over TLS. urllib opens a new connection per call (and a new TLS session);
the persistent http.client connection is the limit a pool can approach; db_utils.http sits in between:
keep-alive like the limit, plus urllib's request/response machinery.

    python bench/bench_http.py [--quick]
"""

from __future__ import annotations

import http.client
import ssl
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import db_utils.http  # after the sys.path set-up: runnable from a checkout without install
from bench.common import Harness, parse_args
from testservers.http import PoolTestServer, make_certificates

PATH = "/bytes/512"


def contenders(server: PoolTestServer, context: ssl.SSLContext | None) -> dict[str, Callable[[], bytes]]:
    url = server.url + PATH
    persistent: http.client.HTTPConnection
    if context is None:
        persistent = http.client.HTTPConnection("127.0.0.1", server.port)
    else:
        persistent = http.client.HTTPSConnection("127.0.0.1", server.port, context=context)

    def stock() -> bytes:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return response.read()  # type: ignore[no-any-return]

    def pooled() -> bytes:
        with db_utils.http.urlopen(url, timeout=10, context=context) as response:
            return response.read()  # type: ignore[no-any-return]

    def limit() -> bytes:
        persistent.request("GET", PATH)
        return persistent.getresponse().read()

    return {"urllib.request.urlopen": stock, "db_utils.http.urlopen": pooled, "http.client persistent": limit}


def run(quick: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        certs = make_certificates(Path(tmp))
        for label, tls in (("http", False), ("https", True)):
            server = PoolTestServer(tls=certs.server_context() if tls else None).start()
            context = certs.client_context() if tls else None
            try:
                harness = Harness(f"http_{label}", quick=quick)
                for name, operation in contenders(server, context).items():
                    assert operation() == operation(), name  # same bytes from every contender
                    harness.measure(name, operation)
                document = harness.report(
                    baseline="urllib.request.urlopen",
                    notes={"server": "testservers.http.PoolTestServer (ThreadingHTTPServer)", "path": PATH},
                )
                ratios = {r["name"]: r["speedup_vs_baseline"] for r in document["results"]}
                share = ratios["db_utils.http.urlopen"] / ratios["http.client persistent"]
                print(f"  db_utils.http reaches {share:.0%} of the persistent-connection limit over {label}")
            finally:
                server.stop()
    print(f"\npool stats: {db_utils.http.http_stats()}")


if __name__ == "__main__":
    run(parse_args(__doc__ or "").quick)
