"""The in-memory SQLite scratch database and its SQL function."""

from legacy_app import analytics

LINES = [
    {"user_id": 1, "name": "Ada", "order_id": 10, "quantity": 2, "price_cents": 450},
    {"user_id": 1, "name": "Ada", "order_id": 10, "quantity": 1, "price_cents": 1200},
    {"user_id": 1, "name": "Ada", "order_id": 11, "quantity": 1, "price_cents": 5},
    {"user_id": 2, "name": "Grace", "order_id": 12, "quantity": 1, "price_cents": 3500},
]


def test_cents_to_dollars():
    assert analytics.cents_to_dollars(12345) == "123.45"
    assert analytics.cents_to_dollars(5) == "0.05"
    assert analytics.cents_to_dollars(None) is None


def test_summary_per_user_biggest_spender_first():
    assert analytics.summarize_orders(LINES) == [
        {"user_id": 2, "name": "Grace", "orders": 1, "items": 1, "total_cents": 3500, "total": "35.00"},
        {"user_id": 1, "name": "Ada", "orders": 2, "items": 4, "total_cents": 2105, "total": "21.05"},
    ]


def test_each_call_gets_its_own_empty_scratch_database():
    analytics.summarize_orders(LINES)

    only_grace = analytics.summarize_orders(LINES[3:])

    assert [row["name"] for row in only_grace] == ["Grace"]
    assert analytics.summarize_orders([]) == []
