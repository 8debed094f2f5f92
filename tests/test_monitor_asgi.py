"""The ASGI app served by a real uvicorn (lifespan on) on 127.0.0.1, asked with urllib."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import db_utils
from db_utils.monitor import Monitor, make_asgi_app
from db_utils.monitor.asgi import route_path
from tests.monitor_support import STARTUP_DEADLINE, PostgresLoad, request, require, uvicorn_server
from testservers.ports import PortTaken, port_taken, start_on_free_port

TOKEN = "asgi-Token.123"


@pytest.mark.postgres
def test_documents_over_uvicorn(pg_pools):
    db_utils.get_connection_pool(pool_size=2, max_overflow=0)
    with uvicorn_server(make_asgi_app(monitor=Monitor())) as (base, _log):
        load = PostgresLoad(1)
        try:
            pools = request(base + "/connection-pools")
            alerts = request(base + "/alerts")
        finally:
            load.release()
        health = request(base + "/system-health")

    assert pools.status == 200
    assert pools.headers["content-type"] == "application/json"
    (pool,) = [p for p in pools.json()["pools"] if p["kind"] == "postgres"]
    assert (pool["active"], pool["max"], pool["utilization"]) == (1, 2, 0.5)
    assert alerts.json() == {"alerts": []}
    assert health.status == 200
    assert health.json()["status"] == "healthy"


@pytest.mark.postgres
def test_an_exhausted_pool_is_reported_without_waiting_for_a_connection(pg_pools):
    # A ping would wait up to the pool timeout (far beyond the client's) for a connection the load holds.
    db_utils.get_connection_pool(pool_size=2, max_overflow=0, timeout=3600)
    with uvicorn_server(make_asgi_app(monitor=Monitor())) as (base, _log):
        assert request(base + "/system-health").json()["status"] == "healthy"  # learns which pool it pings
        load = PostgresLoad(2)
        try:
            health = request(base + "/system-health")
        finally:
            load.release()

    assert health.status == 200
    document = health.json()
    assert document["status"] == "degraded"
    (component,) = [c for c in document["components"] if c["kind"] == "postgres"]
    assert component["ping"]["ok"] is None
    assert "exhausted" in component["ping"]["skipped"]
    assert component["alerts"] == ["high_utilization"]


def test_status_codes_and_token_over_uvicorn():
    app = make_asgi_app(monitor=Monitor(databases=()), token=TOKEN)
    with uvicorn_server(app) as (base, log_lines):
        anonymous = request(base + "/alerts")
        wrong = request(base + "/alerts", token="nope")
        right = request(base + "/alerts", token=TOKEN)
        missing = request(base + "/metrics", token=TOKEN)
        post = request(base + "/alerts", method="POST", token=TOKEN)
        head = request(base + "/alerts", method="HEAD", token=TOKEN)

    assert anonymous.status == wrong.status == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="poolshift"'
    assert wrong.headers["www-authenticate"] == 'Bearer realm="poolshift", error="invalid_token"'
    assert right.status == 200
    assert right.json() == {"alerts": []}
    assert missing.status == 404
    assert post.status == 405
    assert post.headers["allow"] == "GET, HEAD"
    assert head.status == 200
    assert head.body == b""
    assert any("/alerts" in line for line in log_lines)  # uvicorn's access log saw the requests...
    assert not any(TOKEN in line for line in log_lines)  # ...and never the token
    for reply in (anonymous, wrong, right, missing, post, head):
        assert TOKEN.encode() not in reply.body


def test_served_behind_a_path_prefix():
    """uvicorn --root-path: the prefix arrives in ``root_path`` and at the start of ``path``."""
    with uvicorn_server(make_asgi_app(monitor=Monitor(databases=())), root_path="/monitor") as (base, _log):
        assert request(base + "/alerts").status == 200
        assert request(base + "/monitor/alerts").status == 404  # /monitor/monitor/alerts below the prefix


@pytest.mark.parametrize(
    ("path", "root_path", "routed"),
    [
        ("/alerts", "", "/alerts"),
        ("/monitor/alerts", "/monitor", "/alerts"),  # Starlette >= 0.33 Mount, uvicorn >= 0.26: full path
        ("/alerts", "/monitor", "/alerts"),  # older servers and frameworks: path already below the prefix
        ("/monitoring/alerts", "/monitor", "/monitoring/alerts"),  # a prefix of the name is not the mount
        ("/monitor", "/monitor", "/"),
    ],
)
def test_route_path_removes_the_mount_prefix(path, root_path, routed):
    assert route_path({"type": "http", "path": path, "root_path": root_path}) == routed


def test_the_documented_uvicorn_command_serves_the_app(tmp_path):
    """``uvicorn --factory db_utils.monitor:make_asgi_app`` (migration_guide/monitoring.md), as a process."""
    require("uvicorn")
    env = {k: v for k, v in os.environ.items() if k != "POOLSHIFT_MONITOR_TOKEN"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    log = tmp_path / "uvicorn.log"

    def serve(port: int) -> tuple[subprocess.Popen[bytes], int]:
        command = [sys.executable, "-m", "uvicorn", "--factory", "db_utils.monitor:make_asgi_app"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "on"]
        with open(log, "wb") as output:
            process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_DEADLINE
        # Ready once uvicorn says it has bound the port: before that, whatever took the port would answer.
        while f"Uvicorn running on http://127.0.0.1:{port}" not in log.read_text():
            if process.poll() is not None:
                raise (PortTaken if port_taken(log.read_text()) else AssertionError)(log.read_text())
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise AssertionError(f"uvicorn not ready:\n{log.read_text()}")
            time.sleep(0.05)
        return process, port

    process, port = start_on_free_port(serve)
    try:
        reply = request(f"http://127.0.0.1:{port}/alerts")
    finally:
        process.terminate()
        process.wait(STARTUP_DEADLINE)
    assert reply.status == 200
    assert reply.json() == {"alerts": []}
