"""db_utils.http.urlopen vs urllib.request.urlopen vs a persistent http.client connection.

All three GET the same small file (512 bytes) from a local keep-alive server on 127.0.0.1, each server
in its own process (its own results file):

* ``http_nginx``: nginx (testservers.nginx), which answers in microseconds, so what a client pays per call
  is its own work plus connection setup. Skipped, with a note in the JSON, when nginx is not installed
  (Debian package ``nginx-light``).
* ``http_nginx_tls``: the same over HTTPS, where a new connection also costs a TLS handshake.
* ``http_python``: the Python ThreadingHTTPServer of the test suite (testservers.http, HTTP/1.1, with
  ``TCP_NODELAY`` like production servers), whose own per-request cost (header parsing in Python, a thread
  per connection) every contender waits for.
* ``http_python_nagle``: the same server without ``TCP_NODELAY``, as Python's ``http.server`` comes: the
  delayed-ACK stall case (db_utils/http/keepalive.py).
* ``http_python_tls``: the Python server over TLS.

urllib opens a new connection per call (and a new TLS session); the persistent http.client connection is
the limit a pool can approach; db_utils.http sits in between: keep-alive like the limit, plus urllib's
``Request`` and its request/response processors (kept for exact compatibility).

Targets (issue 13): >= 1.3x urllib over plain HTTP on loopback (nginx and the Python server, with and
without ``TCP_NODELAY``), never below 1.0x in any case, >= 5x against nginx over HTTPS. Each ratio is the
median of per-round paired ratios, printed with the IQR of those ratios. bench/README.md, section HTTP
explains the figures.

    python -m bench.bench_http [--quick]
"""

from __future__ import annotations

import contextlib
import http.client
import ssl
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import db_utils.http  # after the sys.path set-up: runnable from a checkout without install
from bench.common import Harness, Target, environment, parse_args, write_document
from testservers.http import Certificates, make_certificates, pattern
from testservers.nginx import NginxUnavailable, launch_nginx

ROOT = Path(__file__).resolve().parents[1]
PATH = "/bytes/512"
BASELINE = "urllib.request.urlopen"
POOLED = "db_utils.http.urlopen"
LIMIT = "http.client persistent"

# Operations per round (full mode; --quick divides by 10): each contender's round lasts tens of
# milliseconds, long enough to time, short enough for interleaving to spread the machine's drift evenly.
OPS = {
    "http_nginx": {BASELINE: 150, POOLED: 200, LIMIT: 400},
    "http_nginx_tls": {BASELINE: 20, POOLED: 200, LIMIT: 400},
    "http_python": {BASELINE: 60, POOLED: 150, LIMIT: 250},
    "http_python_nagle": {BASELINE: 60, POOLED: 150, LIMIT: 10},  # the limit stalls: ~40 ms per request
    "http_python_tls": {BASELINE: 15, POOLED: 150, LIMIT: 250},
}
# The targets (module docstring): minimum speed-up of POOLED over BASELINE.
TARGETS = {
    "http_nginx": 1.3,
    "http_nginx_tls": 5.0,
    "http_python": 1.3,
    "http_python_nagle": 1.3,
    "http_python_tls": 1.0,
}
TARGET_SERVERS = {
    "http_nginx": "nginx, plain HTTP",
    "http_nginx_tls": "nginx, HTTPS",
    "http_python": "Python server, plain HTTP",
    "http_python_nagle": "Python server without TCP_NODELAY, plain HTTP",
    "http_python_tls": "Python server, HTTPS",
}
ROUNDS = 25  # full mode (--quick: 5): cheap enough here, and more rounds steady the paired medians


def limit_note(limit_ratio: float, share: float) -> str:
    """What caps the ratio, in this run's own figures (recorded only when a target is missed)."""
    return (
        f"a persistent http.client connection, the ceiling for any keep-alive client built on http.client, "
        f"is itself only {limit_ratio:.2f}x urllib here; db_utils.http reaches {share:.0%} of it "
        "(bench/README.md, section HTTP)"
    )


def paired_ratio_quartiles(harness: Harness, slower: str, faster: str) -> tuple[float, float, float]:
    """Q1, median and Q3 of the per-round paired ratios (the median is Harness.paired_ratio's)."""
    pairs = [a / b for a, b in zip(harness.samples[slower], harness.samples[faster], strict=True)]
    if len(pairs) == 1:
        return pairs[0], pairs[0], pairs[0]
    q1, median, q3 = statistics.quantiles(pairs, n=4, method="inclusive")
    return q1, median, q3


def contenders(base_url: str, port: int, context: ssl.SSLContext | None) -> dict[str, Callable[[], bytes]]:
    url = base_url + PATH
    persistent: http.client.HTTPConnection
    if context is None:
        persistent = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        persistent = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)

    def stock() -> bytes:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return response.read()  # type: ignore[no-any-return]

    def pooled() -> bytes:
        with db_utils.http.urlopen(url, timeout=10, context=context) as response:
            return response.read()  # type: ignore[no-any-return]

    def limit() -> bytes:
        persistent.request("GET", PATH)
        return persistent.getresponse().read()

    return {BASELINE: stock, POOLED: pooled, LIMIT: limit}


def speedup_target(name: str, speedup: float, iqr: tuple[float, float], note: str) -> Target:
    """The target row; its last column always shows the paired ratio's IQR (and the limit when missed)."""
    met = speedup >= TARGETS[name]
    spread = f"paired-ratio IQR {iqr[0]:.2f}-{iqr[1]:.2f}"
    return Target(
        target_name(name),
        f">= {TARGETS[name]:g}",
        round(speedup, 4),
        met,
        spread if met else f"{spread}; {note}",
    )


def target_name(name: str) -> str:
    return f"db_utils.http.urlopen vs urllib.request.urlopen, {TARGET_SERVERS[name]} (x faster)"


def measure_server(
    name: str, base_url: str, port: int, context: ssl.SSLContext | None, quick: bool, notes: dict[str, Any]
) -> dict[str, Any]:
    harness = Harness(name, quick=quick, rounds=ROUNDS)
    operations = contenders(base_url, port, context)
    for contender, operation in operations.items():
        if operation() != pattern(512):  # every contender must get the same, whole body
            raise RuntimeError(f"{contender} read a different body from {base_url}{PATH}")
    harness.measure_interleaved(operations, ops=OPS[name])
    q1, speedup, q3 = paired_ratio_quartiles(harness, BASELINE, POOLED)
    share = 1 / harness.paired_ratio(POOLED, LIMIT)
    limit_ratio = harness.paired_ratio(BASELINE, LIMIT)
    targets = [speedup_target(name, speedup, (q1, q3), limit_note(limit_ratio, share))]
    notes = {
        **notes,
        "path": PATH,
        "target_ratio": "median of per-round paired ratios (urllib time / db_utils.http time)",
        "target_ratio_iqr": [round(q1, 3), round(q3, 3)],
        "pooled_share_of_limit": round(share, 3),
        "limit_vs_urllib": round(limit_ratio, 3),
        "pool_stats_after": db_utils.http.http_stats(),
    }
    document = harness.report(baseline=BASELINE, notes=notes, targets=targets)
    print(
        f"  db_utils.http: {speedup:.2f}x urllib (IQR {q1:.2f}-{q3:.2f}), "
        f"{share:.0%} of the persistent-connection limit"
    )
    return document


def run_nginx(name: str, quick: bool, certs: Certificates | None) -> dict[str, Any]:
    try:
        server = launch_nginx(tls=certs)
    except NginxUnavailable as missing:
        return skipped(name, quick, str(missing))
    try:
        tls = " over TLS" if certs else ""
        notes = {"server": f"nginx ({server.version()}, 1 worker, static file){tls}"}
        context = certs.client_context() if certs else None
        return measure_server(name, server.url, server.port, context, quick, notes)
    finally:
        server.stop()


def skipped(name: str, quick: bool, reason: str) -> dict[str, Any]:
    """A results document that says why nothing was measured (the report shows the target as unmet)."""
    print(f"\n{name}: SKIPPED: {reason}")
    target = Target(
        target_name(name), f">= {TARGETS[name]:g}", float("nan"), False, f"not measured: {reason}"
    )
    document = {
        "benchmark": name,
        "quick": quick,
        "baseline": BASELINE,
        **environment(),
        "results": [],
        "notes": {"skipped": reason},
        "targets": [{**asdict(target), "measured": None}],  # null, not NaN: JSON has no NaN
    }
    write_document(name, document)
    return document


# The Python server runs in a child process, as any server would: in the benchmark's own process its
# handler threads would compete with the client for the GIL, and the hand-off between them would be
# measured as request time.
SERVER_PROCESS = """
import sys
from pathlib import Path
from testservers.http import Certificates, PoolTestServer
nodelay = sys.argv[1] == "nodelay"
certs = Certificates(*map(Path, sys.argv[2:])) if len(sys.argv) > 2 else None
server = PoolTestServer(tls=certs.server_context() if certs else None, nodelay=nodelay).start()
print(server.port, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
server.stop()
"""


@contextlib.contextmanager
def python_server(certs: Certificates | None, *, nodelay: bool = True) -> Iterator[int]:
    """Start testservers.http's server in a child process; yields its port on 127.0.0.1."""
    files = [str(certs.ca_pem), str(certs.cert_pem), str(certs.key_pem)] if certs else []
    mode = "nodelay" if nodelay else "nagle"
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER_PROCESS, mode, *files],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None  # a pipe, as asked
        line = child.stdout.readline()
        if not line:
            raise RuntimeError(f"the Python test server did not start (exit code {child.wait()})")
        yield int(line)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_python(name: str, quick: bool, certs: Certificates | None, *, nodelay: bool = True) -> dict[str, Any]:
    with python_server(certs, nodelay=nodelay) as port:
        tls = " over TLS" if certs else ""
        nagle = "" if nodelay else ", no TCP_NODELAY"
        notes = {"server": f"Python ThreadingHTTPServer (testservers.http, own process{nagle}){tls}"}
        context = certs.client_context() if certs else None
        scheme = "https" if certs else "http"
        return measure_server(name, f"{scheme}://127.0.0.1:{port}", port, context, quick, notes)


def run(quick: bool) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="poolshift-bench-http-") as tmp:
        certs = make_certificates(Path(tmp))
        documents = [
            run_nginx("http_nginx", quick, None),
            run_nginx("http_nginx_tls", quick, certs),
            run_python("http_python", quick, None),
            run_python("http_python_nagle", quick, None, nodelay=False),
            run_python("http_python_tls", quick, certs),
        ]
    print(f"\npool stats: {db_utils.http.http_stats()}")
    return documents


if __name__ == "__main__":
    run(parse_args(__doc__ or "").quick)
