"""Client instructions per HTTP GET, counted by callgrind: urllib vs db_utils.http vs persistent http.client.

Wall time on a shared 2-core machine moves by tens of percent between runs; the instructions the client
process executes per request do not (the server's work, the kernel's and the waits are not counted: the
server runs outside valgrind, and callgrind counts user-space instructions only). That makes this the
measure for cutting the direct path's own Python, and for saying what is left over the persistent
``http.client`` connection, the floor for any client built on http.client.

Same method as bench/callgrind_postgres.py (whose helpers it uses): each contender runs in its own child
interpreter under ``valgrind --tool=callgrind`` with collection on only inside CPython's ``map_next``; the
child warms up, then runs ``list(map(operation, range(N)))``. The contenders GET the 512-byte file
bench_http.py uses, from nginx (testservers.nginx) when it is installed, else from the Python test server
in its own process. ``--parts`` also counts the pieces of a direct-path call one by one (each in its own
``map`` loop), which splits db_utils.http's figure by step.

    python bench/callgrind_http.py [--ops N] [--top K] [--parts]   # writes bench/results/callgrind_http.json
"""

from __future__ import annotations

import contextlib
import http.client
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import callgrind
from bench.callgrind import WARM_UP_OPS, count_in

PATH = "/bytes/512"
BASELINE = "urllib.request.urlopen"
POOLED = "db_utils.http.urlopen"
LIMIT = "http.client persistent"
CONTENDERS = (BASELINE, POOLED, LIMIT)
# The steps of one direct-path call (db_utils/http/urlopen.py and direct.py), counted one by one.
PARTS = (
    "route: proxies + settings + Request",
    "Request(url) + do_request_ + audit",
    "direct.send + read + close",
    "http.client request + getresponse + read",
)


def operation_for(name: str, base_url: str) -> Callable[[int], object]:
    """The contender's unit of work, as bench_http.py's ``contenders`` (run in the child)."""
    import urllib.request

    import db_utils.http

    url = base_url + PATH
    if name == BASELINE:

        def stock(_: int) -> bytes:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.read()  # type: ignore[no-any-return]

        return stock
    if name == POOLED:

        def pooled(_: int) -> bytes:
            with db_utils.http.urlopen(url, timeout=10) as response:
                return response.read()  # type: ignore[no-any-return]

        return pooled
    if name == LIMIT:
        host, port = base_url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)

        def limit(_: int) -> bytes:
            connection.request("GET", PATH)
            return connection.getresponse().read()

        return limit
    return part_for(name, url)


def part_for(name: str, url: str) -> Callable[[int], object]:
    """One step of the direct path, repeatable on its own (the steps' inputs are prepared once)."""
    import urllib.request

    from db_utils.http import direct, manager
    from db_utils.http.route import current_proxies, new_request, route
    from db_utils.http.transport import opener_for

    def prepared() -> urllib.request.Request:
        request = route(url, current_proxies(), None, None, False)
        assert isinstance(request, urllib.request.Request)
        request.timeout = 10
        for processor in opener.process_request["http"]:  # type: ignore[attr-defined]
            request = processor.http_request(request)
        return request

    opener = opener_for(current_proxies())
    if name == PARTS[0]:

        def routing(_: int) -> object:
            proxies = current_proxies()
            manager.current_settings()
            return route(url, proxies, None, None, False)

        return routing
    if name == PARTS[1]:

        def processors(_: int) -> object:
            request = new_request(url)
            request.timeout = 10
            for processor in opener.process_request["http"]:  # type: ignore[attr-defined]
                request = processor.http_request(request)
            sys.audit("urllib.Request", request.full_url, request.data, request.headers, "GET")
            return request

        return processors
    request = prepared()
    if name == PARTS[2]:

        def sending(_: int) -> bytes:
            with direct.send(request, "http", None) as response:
                return response.read()

        return sending
    if name == PARTS[3]:
        # What direct.send hands to http.client on a kept-alive connection: its floor with these headers.
        host, port = url.removeprefix("http://").split("/")[0].split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        headers = direct.wire_headers(request)

        def exchange(_: int) -> object:
            connection.request("GET", PATH, None, headers)
            response = connection.getresponse()
            response.read()
            return None

        return exchange
    raise SystemExit(f"unknown contender {name!r}")


def child(name: str, ops: int) -> None:
    """Run inside valgrind: warm up, then the measured loop inside ``map``."""
    operation = operation_for(name, os.environ["POOLSHIFT_BENCH_URL"])
    for i in range(WARM_UP_OPS):
        operation(i)
    list(map(operation, range(ops)))


def count(name: str, ops: int, env: dict[str, str], workdir: Path, top: int) -> dict[str, Any]:
    """Run one contender under callgrind; instructions per op and, optionally, its top C functions."""
    return count_in(Path(__file__), (CONTENDERS + PARTS).index(name), name, ops, env, workdir, top)


@contextlib.contextmanager
def server() -> Iterator[tuple[str, str]]:
    """nginx if installed, else the Python test server in its own process: (base URL, description)."""
    from bench.bench_http import python_server
    from testservers.nginx import NginxUnavailable, launch_nginx

    try:
        nginx = launch_nginx()
    except NginxUnavailable:
        with python_server(None) as port:
            yield f"http://127.0.0.1:{port}", "Python test server (testservers.http)"
        return
    try:
        yield nginx.url, f"nginx ({nginx.version()})"
    finally:
        nginx.stop()


def run(ops: int, top: int, parts: bool) -> dict[str, Any]:
    callgrind.require_valgrind()
    names = CONTENDERS + (PARTS if parts else ())
    with server() as (url, description), tempfile.TemporaryDirectory() as workdir:
        env = {**os.environ, "POOLSHIFT_BENCH_URL": url}
        results = [count(name, ops, env, Path(workdir), top) for name in names]
    by_name = {r["name"]: r["per_op"] for r in results}
    print(f"\nclient instructions per GET {PATH} from {description} ({ops} ops each, callgrind)")
    for r in results:
        versus = ""
        if r["name"] in CONTENDERS:
            over = r["per_op"] - by_name[LIMIT]
            versus = f"  {over:>+9,} vs {LIMIT}  x{r['per_op'] / by_name[BASELINE]:.2f} of urllib"
        print(f"  {r['name']:<40} {r['per_op']:>9,}{versus}")
        for line in r.get("top", []):
            print(f"      {line}")
    return callgrind.save(
        "callgrind_http",
        ops,
        results,
        {
            "server": description,
            "measure": "user-space instructions executed by the client process inside the measured loop "
            "(callgrind Ir); server and kernel work and waits are not counted",
        },
    )


def main(argv: list[str] | None = None) -> None:
    callgrind.main(
        argv,
        description=__doc__,
        default_ops=1000,
        ops_help="measured requests per contender",
        extra_flag=("--parts", "also count the direct path's steps one by one"),
        child=child,
        run=run,
    )


if __name__ == "__main__":
    main()
