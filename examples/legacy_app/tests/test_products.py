"""Product lookup through cache, PostgreSQL and the catalogue service."""

import pytest
from legacy_app import cache, clients
from legacy_app.api import products

pytestmark = pytest.mark.postgres


def test_product_from_database_is_cached(db):
    db.query("INSERT INTO products (sku, name, price_cents) VALUES ('TEA-1', 'Green tea', 450)")

    first = products.get_product("TEA-1")
    db.query("UPDATE products SET price_cents = 999 WHERE sku = 'TEA-1'")

    assert first == {"sku": "TEA-1", "name": "Green tea", "price_cents": 450, "source": "database"}
    assert products.get_product("TEA-1") == first
    assert cache.get("product:TEA-1") == first


def test_product_unknown_locally_comes_from_catalogue(db, catalogue):
    product = products.get_product("POT-3")

    assert product == {"sku": "POT-3", "name": "Teapot", "price_cents": 3500, "source": "catalogue"}
    assert catalogue.state.requests[-1]["path"] == "/products/POT-3"


def test_product_unknown_everywhere_is_none_and_not_cached(db, catalogue):
    assert products.get_product("NOPE") is None
    assert cache.keys() == []


def test_catalogue_down_is_none(db):
    assert products.get_product("POT-3") is None


def test_catalogue_error_propagates(db, catalogue):
    catalogue.state.products_status = 500

    with pytest.raises(clients.ServiceError) as excinfo:
        products.get_product("POT-3")

    assert excinfo.value.status == 500


def test_search_by_prefix_cheapest_first(db):
    db.query(
        "INSERT INTO products (sku, name, price_cents) VALUES "
        "('T1', 'Tea, green', 450), ('T2', 'teapot', 3500), ('T3', 'Tea, black', 300), ('M1', 'Mug', 1200), "
        "('P1', %s, 900)",
        ("100% cotton towel",),
    )

    assert [p["sku"] for p in products.search("tea")] == ["T3", "T1", "T2"]
    assert [p["sku"] for p in products.search("tea", limit=1)] == ["T3"]
    assert [p["sku"] for p in products.search("100%")] == ["P1"]
    assert products.search("1%") == []


def test_product_count_counts_committed_products(db):
    assert products.product_count() == 0
    db.query("INSERT INTO products (sku, name, price_cents) VALUES ('A', 'a', 1), ('B', 'b', 2)")
    assert products.product_count() == 2


def test_product_count_is_none_when_the_query_fails(db):
    db.query("ALTER TABLE products RENAME TO products_gone")
    try:
        assert products.product_count() is None
    finally:
        db.query("ALTER TABLE products_gone RENAME TO products")


def test_product_count_raises_on_a_bad_port_setting(db, app_env):
    """A misconfiguration is not an outage: the helper's int(POSTGRES_PORT) error reaches the caller."""
    app_env.setenv("POSTGRES_PORT", "54x32")
    with pytest.raises(ValueError):
        products.product_count()
