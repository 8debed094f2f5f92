from concurrent.futures import ThreadPoolExecutor


def test_create_then_follow(client):
    status, _, body = client.request("POST", "/links", {"code": "docs", "target": "https://example.com/docs"})
    assert (status, body) == (201, {"code": "docs", "target": "https://example.com/docs"})
    status, headers, _ = client.request("GET", "/docs")
    assert status == 302
    assert headers["Location"] == "https://example.com/docs"


def test_code_is_unique(client):
    assert client.request("POST", "/links", {"code": "abc", "target": "https://a.example"})[0] == 201
    status, _, body = client.request("POST", "/links", {"code": "abc", "target": "https://b.example"})
    assert status == 409
    assert body == {"error": "abc is taken"}
    # the conflict did not leave anything half-done: the original target still wins
    assert client.request("GET", "/abc")[1]["Location"] == "https://a.example"


def test_validation(client):
    assert client.request("POST", "/links", {"code": "x", "target": "https://a.example"})[0] == 400
    assert client.request("POST", "/links", {"code": "fine", "target": "ftp://a.example"})[0] == 400


def test_hits_are_counted_under_concurrent_traffic(client):
    client.request("POST", "/links", {"code": "promo", "target": "https://shop.example/promo"})
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: client.request("GET", "/promo")[0], range(24)))
    assert statuses == [302] * 24
    status, _, stats = client.request("GET", "/stats/promo")
    assert status == 200
    assert stats["hits"] == 24
    assert stats["target"] == "https://shop.example/promo"


def test_unknown_links(client):
    assert client.request("GET", "/nothing")[0] == 404
    assert client.request("GET", "/stats/nothing")[0] == 404
    assert client.request("DELETE", "/nothing")[0] == 404


def test_delete(client):
    client.request("POST", "/links", {"code": "tmp", "target": "https://tmp.example"})
    assert client.request("DELETE", "/tmp")[0] == 204
    assert client.request("GET", "/tmp")[0] == 404


def test_top_links(client):
    for code, visits in [("one", 1), ("two", 3), ("six", 2)]:
        client.request("POST", "/links", {"code": code, "target": f"https://{code}.example"})
        for _ in range(visits):
            client.request("GET", f"/{code}")
    status, _, top = client.request("GET", "/top")
    assert status == 200
    assert top == [{"code": "two", "hits": 3}, {"code": "six", "hits": 2}, {"code": "one", "hits": 1}]


def test_health_names_the_database(client, database_url):
    status, _, payload = client.request("GET", "/health")
    assert status == 200
    assert payload["database"] == database_url.rsplit("/", 1)[1]
    assert payload["server_version"] >= 120000
