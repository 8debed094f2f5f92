"""The WSGI app served by wsgiref on 127.0.0.1, asked with urllib: documents, status codes, bearer token."""

from __future__ import annotations

import logging

import pytest

import db_utils
import db_utils.http
import db_utils.sqlite
from db_utils.monitor import Monitor, make_wsgi_app
from db_utils.monitor.figures import DESCRIPTIONS, FIGURES
from tests.monitor_support import PostgresLoad, request, wsgi_server
from testservers.ports import refused_port

TOKEN = "s3cr3t-Monitor_token~42"


def by_kind(document, kind):
    return [pool for pool in document["pools"] if pool["kind"] == kind]


def http_figures(document):
    (http,) = by_kind(document, "http")
    return http["opened"], http["acquired"], http["reused"]


@pytest.mark.postgres
def test_connection_pools_reports_every_kind_in_one_vocabulary(
    pg_pools, sqlite_pools, fresh_http_pool, http_server, tmp_path
):
    db_utils.get_connection_pool(pool_size=3, max_overflow=2)
    with db_utils.get_pooled_connection() as conn:
        conn.cursor().execute("SELECT 1")
    sqlite_conn = db_utils.sqlite.connect(str(tmp_path / "app.db"))
    sqlite_conn.execute("SELECT 1")
    sqlite_conn.close()
    # The HTTP counters are process-wide and cumulative (earlier tests count too): compare differences.
    http_before = http_figures(Monitor(databases=()).connection_pools())
    for _ in range(2):
        with db_utils.http.urlopen(http_server.url + "/echo") as response:
            response.read()
    load = PostgresLoad(2)
    try:
        with wsgi_server(make_wsgi_app(monitor=Monitor(databases=()))) as (base, _log):
            reply = request(base + "/connection-pools")
    finally:
        load.release()

    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    document = reply.json()
    expected_keys = {"kind", "name", "lifecycle", *DESCRIPTIONS} | {figure.key for figure in FIGURES}
    assert all(set(pool) == expected_keys for pool in document["pools"])
    (postgres,) = by_kind(document, "postgres")
    assert f"127.0.0.1:{pg_pools.port}" in postgres["name"]
    expected = {
        "size": 3,
        "max_overflow": 2,
        "max": 5,
        "active": 2,
        "idle": 0,
        "total": 2,
        "utilization": 0.4,
        "opened": 2,
        "acquired": 3,
        "reused": 1,
        "reuse_rate": 0.3333,
        "timeouts": 0,
        "waits": 0,
        "checkout_wait_avg_ms": 0.0,
        "failed": 0,
        "pending": 0,
        # No source counts this yet: unknown is null, never a made-up zero.
        "query_time_avg_ms": None,
    }
    assert {key: postgres[key] for key in expected} == expected
    (sqlite,) = by_kind(document, "sqlite")
    assert sqlite["name"].endswith("app.db")
    assert (sqlite["opened"], sqlite["active"], sqlite["idle"], sqlite["max"]) == (1, 0, 1, None)
    opened, acquired, reused = (a - b for a, b in zip(http_figures(document), http_before, strict=True))
    assert (opened, acquired, reused) == (1, 2, 1)


@pytest.mark.postgres
def test_system_health_pings_each_listed_database_and_hides_passwords(pg_pools):
    with refused_port() as port:
        unreachable = f"postgresql://app:hunter2-secret@127.0.0.1:{port}/app"
        monitor = Monitor(databases=[None, unreachable])
        with wsgi_server(make_wsgi_app(monitor=monitor)) as (base, _log):
            reply = request(base + "/system-health")

    assert reply.status == 503
    document = reply.json()
    assert document["status"] == "unhealthy"
    components = {c["name"]: c for c in document["components"] if c["kind"] == "postgres"}
    (good,) = [c for name, c in components.items() if f":{pg_pools.port}/" in name]
    assert good["status"] == "healthy"
    assert good["ping"]["ok"] is True
    assert good["ping"]["latency_ms"] > 0
    assert good["checkout_wait_avg_ms"] == 0.0
    assert good["alerts"] == []
    (bad,) = [c for name, c in components.items() if name != good["name"]]
    assert bad["status"] == "unhealthy"
    assert bad["ping"]["ok"] is False
    assert "OperationalError" in bad["ping"]["error"]
    assert b"hunter2" not in reply.body


@pytest.mark.postgres
def test_system_health_is_healthy_when_every_ping_answers(pg_pools):
    with wsgi_server(make_wsgi_app(monitor=Monitor())) as (base, _log):
        reply = request(base + "/system-health")
    assert reply.status == 200
    assert reply.json()["status"] == "healthy"


def test_other_paths_are_404_and_other_methods_405():
    with wsgi_server(make_wsgi_app(monitor=Monitor(databases=()))) as (base, _log):
        missing = request(base + "/metrics")
        root = request(base + "/")
        post = request(base + "/alerts", method="POST")
        delete = request(base + "/connection-pools", method="DELETE")
        get = request(base + "/alerts")
        head = request(base + "/alerts", method="HEAD")
    assert missing.status == root.status == 404
    assert missing.json()["endpoints"] == ["/alerts", "/connection-pools", "/system-health"]
    assert post.status == delete.status == 405
    assert post.headers["Allow"] == "GET, HEAD"
    assert get.status == head.status == 200
    assert head.body == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]


def test_token_from_the_environment_guards_every_path_and_is_never_shown(monkeypatch, caplog):
    monkeypatch.setenv("POOLSHIFT_MONITOR_TOKEN", TOKEN)
    app = make_wsgi_app(monitor=Monitor(databases=()))
    monkeypatch.delenv("POOLSHIFT_MONITOR_TOKEN")  # read at creation: the app keeps it
    with caplog.at_level(logging.DEBUG), wsgi_server(app) as (base, server_log):
        anonymous = request(base + "/alerts")
        unknown_path = request(base + "/nope")
        wrong = request(base + "/alerts", token=TOKEN + "x")
        other_scheme = request(base + "/alerts", token=TOKEN, scheme="Basic")
        right = request(base + "/alerts", token=TOKEN)
        lower_case_scheme = request(base + "/connection-pools", token=TOKEN, scheme="bearer")
        right_but_404 = request(base + "/nope", token=TOKEN)

    assert anonymous.status == unknown_path.status == wrong.status == other_scheme.status == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="poolshift"'
    assert wrong.headers["WWW-Authenticate"] == 'Bearer realm="poolshift", error="invalid_token"'
    assert right.status == lower_case_scheme.status == 200
    assert right_but_404.status == 404
    replies = [anonymous, unknown_path, wrong, other_scheme, right, lower_case_scheme, right_but_404]
    for reply in replies:
        assert TOKEN.encode() not in reply.body
        assert not any(TOKEN in value for value in reply.headers.values())
    assert len(server_log) == len(replies)
    assert not any(TOKEN in line for line in server_log)
    assert TOKEN not in caplog.text


def test_explicit_token_wins_and_a_malformed_one_fails_at_creation_without_echo(monkeypatch):
    monkeypatch.setenv("POOLSHIFT_MONITOR_TOKEN", "from-the-environment")
    with wsgi_server(make_wsgi_app(monitor=Monitor(databases=()), token=TOKEN)) as (base, _log):
        assert request(base + "/alerts", token=TOKEN).status == 200
        assert request(base + "/alerts", token="from-the-environment").status == 401

    monkeypatch.setenv("POOLSHIFT_MONITOR_TOKEN", "two words")
    with pytest.raises(db_utils.ConfigError, match="POOLSHIFT_MONITOR_TOKEN is not a valid bearer") as caught:
        make_wsgi_app()
    assert "two words" not in str(caught.value)


def test_blank_token_means_no_authentication(monkeypatch):
    monkeypatch.setenv("POOLSHIFT_MONITOR_TOKEN", "  ")
    with wsgi_server(make_wsgi_app(monitor=Monitor(databases=()))) as (base, _log):
        assert request(base + "/alerts").status == 200
