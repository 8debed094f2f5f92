"""The health endpoint and the autocommit audit writer."""

import pytest
from legacy_app import audit
from legacy_app.api import health, orders, users

pytestmark = pytest.mark.postgres


def test_health_ok_when_database_and_catalogue_answer(db, catalogue):
    doc = health.health()

    assert doc["status"] == "ok"
    assert doc["checks"] == {"database": "up", "catalogue": "up"}
    assert doc["version"]


def test_health_degraded_when_catalogue_is_unreachable(db):
    # app_env points SERVICE_URL at a port nobody listens on
    assert health.health()["checks"] == {"database": "up", "catalogue": "down"}
    assert health.health()["status"] == "degraded"


def test_audit_entry_is_visible_immediately_without_commit(db):
    assert audit.record("login", "user 1") is True

    assert db.query("SELECT event, detail FROM audit_log") == [("login", "user 1")]


def test_recent_audit_entries_newest_first(db):
    for n in range(3):
        audit.record("event-%d" % n)

    assert audit.recent(limit=2) == [("event-2", None), ("event-1", None)]


def test_autocommit_of_one_caller_does_not_reach_the_next(db):
    """After the autocommit audit writer, a transactional handler still rolls back as a unit."""
    db.query("INSERT INTO products (sku, name, price_cents) VALUES ('TEA-1', 'Green tea', 450)")
    ada = users.create_user("Ada", "ada@example.org")
    for n in range(5):
        audit.record("warm-up-%d" % n)
    assert health.check_database() is True  # another autocommit user

    with pytest.raises(orders.OrderError):
        orders.place_order(ada, [("TEA-1", 1), ("NOPE", 1)])

    assert db.query("SELECT count(*) FROM orders") == [(0,)]
    assert db.query("SELECT count(*) FROM order_items") == [(0,)]
