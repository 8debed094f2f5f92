"""The cron jobs: price sync (HTTP -> PostgreSQL, all or nothing) and the nightly report
(PostgreSQL -> in-memory SQLite -> report file)."""

import sqlite3

import pytest
from legacy_app import cache
from legacy_app.api import orders, users
from legacy_app.jobs import nightly_report, sync_prices

pytestmark = pytest.mark.postgres


def test_sync_inserts_and_updates_prices(db, catalogue):
    db.query("INSERT INTO products (sku, name, price_cents) VALUES ('TEA-1', 'Old tea', 400)")

    assert sync_prices.run() == 3

    assert db.query("SELECT sku, name, price_cents FROM products ORDER BY sku") == [
        ("MUG-2", "Enamel mug", 1200),
        ("POT-3", "Teapot", 3500),
        ("TEA-1", "Green tea", 450),
    ]
    assert catalogue.state.events == [{"type": "prices-synced", "count": 3}]


def test_one_bad_price_rolls_back_the_whole_sync(db, catalogue):
    db.query("INSERT INTO products (sku, name, price_cents) VALUES ('TEA-1', 'Old tea', 400)")
    catalogue.state.price_list.append({"sku": "BAD-9", "name": "Broken", "price_cents": -1})

    with pytest.raises(sync_prices.SyncError, match="rejected"):
        sync_prices.run()

    assert db.query("SELECT sku, price_cents FROM products") == [("TEA-1", 400)]
    assert catalogue.state.events == []


def test_sync_works_again_after_a_rejected_run(db, catalogue):
    catalogue.state.price_list.append({"sku": "BAD-9", "name": "Broken", "price_cents": -1})
    with pytest.raises(sync_prices.SyncError):
        sync_prices.run()
    catalogue.state.price_list.pop()

    assert sync_prices.run() == 3
    assert db.query("SELECT count(*) FROM products") == [(3,)]


def test_price_list_http_error_is_a_sync_error(db, catalogue):
    catalogue.state.prices_status = 503

    with pytest.raises(sync_prices.SyncError, match="HTTP 503"):
        sync_prices.run()

    assert db.query("SELECT count(*) FROM products") == [(0,)]


@pytest.fixture
def orders_placed(db):
    db.query(
        "INSERT INTO products (sku, name, price_cents) "
        "VALUES ('TEA-1', 'Green tea', 450), ('POT-3', 'Pot', 3500)"
    )
    ada = users.create_user("Ada", "ada@example.org")
    grace = users.create_user("Grace", "grace@example.org")
    orders.place_order(ada, [("TEA-1", 2)])
    orders.place_order(ada, [("TEA-1", 1)])
    orders.place_order(grace, [("POT-3", 1)])
    cancelled = orders.place_order(grace, [("POT-3", 5)])
    orders.cancel_order(cancelled)
    return {"ada": ada, "grace": grace}


def test_nightly_report_is_computed_and_stored(orders_placed):
    summary = nightly_report.run("2024-03-01")

    expected = [
        {
            "user_id": orders_placed["grace"],
            "name": "Grace",
            "orders": 1,
            "items": 1,
            "total_cents": 3500,
            "total": "35.00",
        },
        {
            "user_id": orders_placed["ada"],
            "name": "Ada",
            "orders": 2,
            "items": 3,
            "total_cents": 1350,
            "total": "13.50",
        },
    ]
    assert summary == expected
    assert nightly_report.read("2024-03-01") == [dict(row, day="2024-03-01") for row in expected]


def test_nightly_report_rerun_replaces_the_day(orders_placed):
    nightly_report.run("2024-03-01")
    nightly_report.run("2024-03-01")
    nightly_report.run("2024-03-02")

    with sqlite3.connect(cache.cache_path()) as conn:
        counts = conn.execute("SELECT day, count(*) FROM daily_report GROUP BY day ORDER BY day").fetchall()
    conn.close()
    assert counts == [("2024-03-01", 2), ("2024-03-02", 2)]


def test_report_for_a_day_never_run_is_empty(db):
    assert nightly_report.read("1999-12-31") == []


def test_report_can_go_to_its_own_file(orders_placed, app_env, tmp_path):
    app_env.setenv("REPORT_DB_PATH", str(tmp_path / "reports.db"))

    nightly_report.run("2024-03-01")

    assert len(nightly_report.read("2024-03-01")) == 2
    assert (tmp_path / "reports.db").exists()
    with sqlite3.connect(cache.cache_path()) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE name = 'daily_report'").fetchall()
    conn.close()
    assert tables == []
