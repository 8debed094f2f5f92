"""The catalogue HTTP client against a real local HTTP/1.1 service: JSON in and out, headers, HTTP
errors, refused connections and timeouts."""

import pytest
from legacy_app import clients


def test_get_json(catalogue):
    assert clients.get_json("/health") == {"status": "ok"}


def test_get_product_found_and_not_found(catalogue):
    assert clients.get_product("TEA-1") == {"sku": "TEA-1", "name": "Green tea", "price_cents": 450}
    assert clients.get_product("NOPE") is None


def test_server_error_carries_status_and_detail(catalogue):
    catalogue.state.products_status = 500

    with pytest.raises(clients.ServiceError) as excinfo:
        clients.get_product("TEA-1")

    assert excinfo.value.status == 500
    assert excinfo.value.detail == "catalogue exploded"


def test_unknown_route_is_a_404_service_error(catalogue):
    with pytest.raises(clients.ServiceError) as excinfo:
        clients.get_json("/no/such/route")

    assert excinfo.value.status == 404
    assert excinfo.value.detail == "no route"


def test_post_json_delivers_the_payload(catalogue):
    answer = clients.post_json("/events", {"type": "test", "n": [1, 2, 3]})

    assert answer == {"id": 1, "received": {"type": "test", "n": [1, 2, 3]}}
    assert catalogue.state.events == [{"type": "test", "n": [1, 2, 3]}]
    request = catalogue.state.requests[-1]
    assert request["method"] == "POST"
    assert request["headers"]["Content-Type"] == "application/json"


def test_request_headers_are_sent(catalogue, app_env):
    app_env.setenv("SERVICE_TOKEN", "tok-123")

    headers = clients.get_json("/echo")["headers"]

    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == clients.USER_AGENT
    assert headers["Authorization"] == "Bearer tok-123"
    assert len(headers["X-Request-Id"]) == 32


def test_each_request_gets_its_own_request_id(catalogue):
    clients.get_json("/echo")
    clients.get_json("/echo")

    ids = [r["headers"]["X-Request-Id"] for r in catalogue.state.requests]
    assert len(set(ids)) == 2


def test_refused_connection_is_service_unavailable():
    # app_env points SERVICE_URL at a closed port
    with pytest.raises(clients.ServiceUnavailable, match="cannot reach"):
        clients.get_json("/health")


def test_slow_headers_time_out(catalogue):
    with pytest.raises(clients.ServiceUnavailable):
        clients.get_json("/slow", timeout=0.3)


def test_slow_body_times_out(catalogue):
    with pytest.raises(clients.ServiceUnavailable):
        clients.get_json("/slow-body", timeout=0.3)


def test_client_works_after_a_timeout(catalogue):
    with pytest.raises(clients.ServiceUnavailable):
        clients.get_json("/slow", timeout=0.3)

    assert clients.get_product("MUG-2")["price_cents"] == 1200


def test_many_sequential_calls(catalogue):
    results = [clients.get_product(sku) for sku in ["TEA-1", "MUG-2", "POT-3"] * 10]

    assert [r["sku"] for r in results[:3]] == ["TEA-1", "MUG-2", "POT-3"]
    assert len(catalogue.state.requests) == 30


def test_ping(catalogue):
    assert clients.ping() is True


def test_ping_when_service_is_down():
    assert clients.ping() is False
