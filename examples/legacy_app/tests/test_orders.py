"""Order handlers: multi-statement transactions, rollbacks, a helper sharing the caller's connection, a
handler that never closes its connection, and the per-user order cache."""

import gc

import pytest
from legacy_app.api import orders, users

pytestmark = pytest.mark.postgres


@pytest.fixture
def shop(db):
    db.query(
        "INSERT INTO products (sku, name, price_cents) "
        "VALUES ('TEA-1', 'Green tea', 450), ('MUG-2', 'Mug', 1200)"
    )
    return {"ada": users.create_user("Ada", "ada@example.org"), "db": db}


def test_placed_order_and_lines_are_committed(shop):
    order_id = orders.place_order(shop["ada"], [("TEA-1", 2), ("MUG-2", 1)])

    assert shop["db"].query("SELECT user_id, status FROM orders WHERE id = %s", (order_id,)) == [
        (shop["ada"], "new")
    ]
    assert shop["db"].query("SELECT sku, quantity, price_cents FROM order_items ORDER BY sku") == [
        ("MUG-2", 1, 1200),
        ("TEA-1", 2, 450),
    ]
    assert orders.get_order(order_id) == {
        "id": order_id,
        "user_id": shop["ada"],
        "status": "new",
        "items": [
            {"sku": "MUG-2", "quantity": 1, "price_cents": 1200},
            {"sku": "TEA-1", "quantity": 2, "price_cents": 450},
        ],
    }


def test_unknown_product_rolls_back_the_whole_order(shop):
    with pytest.raises(orders.OrderError, match="unknown product NOPE"):
        orders.place_order(shop["ada"], [("TEA-1", 1), ("NOPE", 1)])

    assert shop["db"].query("SELECT count(*) FROM orders") == [(0,)]
    assert shop["db"].query("SELECT count(*) FROM order_items") == [(0,)]


@pytest.mark.parametrize(
    ("user", "items"),
    [("nobody", [("TEA-1", 1)]), ("ada", [("TEA-1", 0)]), ("ada", [("TEA-1", 1), ("TEA-1", 2)])],
    ids=["unknown-user", "zero-quantity", "duplicate-line"],
)
def test_constraint_violation_is_an_order_error_and_writes_nothing(shop, user, items):
    user_id = shop["ada"] if user == "ada" else 999

    with pytest.raises(orders.OrderError):
        orders.place_order(user_id, items)

    assert shop["db"].query("SELECT count(*) FROM orders") == [(0,)]


def test_empty_order_is_refused_before_touching_the_database(shop):
    with pytest.raises(orders.OrderError, match="at least one item"):
        orders.place_order(shop["ada"], [])


def test_order_after_a_failed_order_starts_a_clean_transaction(shop):
    with pytest.raises(orders.OrderError):
        orders.place_order(shop["ada"], [("NOPE", 1)])

    order_id = orders.place_order(shop["ada"], [("TEA-1", 3)])

    assert orders.order_total(order_id) == 1350
    assert shop["db"].query("SELECT count(*) FROM orders") == [(1,)]


def test_unknown_order_is_none(shop):
    assert orders.get_order(4242) is None


def test_order_total_from_the_handler_that_forgets_to_close(shop):
    first = orders.place_order(shop["ada"], [("TEA-1", 2), ("MUG-2", 1)])

    assert orders.order_total(first) == 2100
    assert orders.order_total(9999) == 0


def test_forgotten_connection_holds_no_locks_and_sees_new_data(shop):
    """The unclosed connection must not stay idle in a transaction: its lock on order_items would block
    schema changes (and every TRUNCATE) for as long as the process lives."""
    order_id = orders.place_order(shop["ada"], [("TEA-1", 1)])
    assert orders.order_total(order_id) == 450
    gc.collect()

    other = shop["db"].connect()
    try:
        with other.cursor() as cur:
            # Bounded wait, so a held lock fails this test instead of hanging it.
            cur.execute("SET lock_timeout = '2s'")
            cur.execute("LOCK TABLE order_items IN ACCESS EXCLUSIVE MODE")
            cur.execute("UPDATE order_items SET quantity = 10 WHERE order_id = %s", (order_id,))
        other.commit()
    finally:
        other.close()

    assert orders.order_total(order_id) == 4500


def test_many_calls_of_the_leaky_handler_keep_working(shop):
    order_id = orders.place_order(shop["ada"], [("MUG-2", 1)])

    totals = [orders.order_total(order_id) for _ in range(60)]

    assert set(totals) == {1200}


def test_cancel_order_once(shop):
    order_id = orders.place_order(shop["ada"], [("TEA-1", 1)])

    assert orders.cancel_order(order_id) is True
    assert orders.cancel_order(order_id) is False
    assert shop["db"].query("SELECT status FROM orders WHERE id = %s", (order_id,)) == [("cancelled",)]
    assert shop["db"].query("SELECT event FROM audit_log") == [("order-cancelled",)]


def test_orders_for_user_is_cached_and_refreshed_by_a_new_order(shop):
    first = orders.place_order(shop["ada"], [("TEA-1", 1)])
    assert orders.orders_for_user(shop["ada"]) == [{"id": first, "status": "new"}]

    # A write behind the app's back is not seen while the cache entry lives...
    shop["db"].query("UPDATE orders SET status = 'shipped' WHERE id = %s", (first,))
    assert orders.orders_for_user(shop["ada"]) == [{"id": first, "status": "new"}]

    # ...and placing an order through the app invalidates it.
    second = orders.place_order(shop["ada"], [("MUG-2", 1)])
    assert orders.orders_for_user(shop["ada"]) == [
        {"id": second, "status": "new"},
        {"id": first, "status": "shipped"},
    ]
