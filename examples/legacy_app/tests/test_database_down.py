"""The legacy contract when PostgreSQL is unreachable or refuses us: handlers degrade (None, [], False),
jobs raise, and the error is logged without the password."""

import logging

import pytest
from fake_service import closed_port
from legacy_app import audit
from legacy_app.api import health, orders, products, users
from legacy_app.jobs import nightly_report, sync_prices

pytestmark = pytest.mark.postgres


@pytest.fixture
def db_down(db, app_env):
    app_env.setenv("POSTGRES_PORT", str(closed_port()))
    return db


@pytest.fixture
def wrong_password(db, app_env):
    app_env.setenv("POSTGRES_PASSWORD", "not-the-Secret-4711")
    return "not-the-Secret-4711"


def test_handlers_degrade_when_database_is_unreachable(db_down):
    assert users.get_user(1) is None
    assert users.create_user("Ada", "ada@example.org") is None
    assert users.update_email(1, "x@example.org") is False
    assert users.list_users() == []
    assert orders.place_order(1, [("TEA-1", 1)]) is None
    assert orders.get_order(1) is None
    assert orders.cancel_order(1) is False
    assert products.search("T") == []
    assert products.product_count() is None
    assert users.user_count() is None
    assert audit.record("lost") is False
    assert health.check_database() is False


def test_nothing_was_written_while_unreachable(db_down):
    users.create_user("Ada", "ada@example.org")

    assert db_down.query("SELECT count(*) FROM users") == [(0,)]


def test_jobs_fail_loudly_when_database_is_unreachable(db_down, catalogue):
    with pytest.raises(RuntimeError, match="database unavailable"):
        nightly_report.run("2024-01-01")
    with pytest.raises(sync_prices.SyncError, match="database unavailable"):
        sync_prices.run()
    assert catalogue.state.events == []


def test_failure_is_logged_without_the_password(wrong_password, caplog):
    caplog.set_level(logging.DEBUG)

    assert users.get_user(1) is None

    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors, "a failed connection must leave a trace in the logs"
    assert wrong_password not in caplog.text


def test_real_password_never_logged_when_database_is_down(db_down, caplog):
    caplog.set_level(logging.DEBUG)

    assert users.get_user(1) is None
    assert health.health()["checks"]["database"] == "down"

    assert db_down.password not in caplog.text


def test_service_recovers_when_database_comes_back(db, app_env):
    good_port = db.port
    app_env.setenv("POSTGRES_PORT", str(closed_port()))
    assert users.create_user("Ada", "ada@example.org") is None

    app_env.setenv("POSTGRES_PORT", str(good_port))

    assert users.get_user(users.create_user("Ada", "ada@example.org"))["name"] == "Ada"
