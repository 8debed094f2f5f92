"""User handlers against a real PostgreSQL: results, and what a separate connection sees committed."""

import pytest
from legacy_app.api import users

pytestmark = pytest.mark.postgres


def test_created_user_is_committed_and_readable(db):
    user_id = users.create_user("Ada", " Ada@Example.org ")

    assert users.get_user(user_id) == {"id": user_id, "name": "Ada", "email": "ada@example.org"}
    assert db.query("SELECT name, email FROM users WHERE id = %s", (user_id,)) == [("Ada", "ada@example.org")]


def test_unknown_user_is_none(db):
    assert users.get_user(12345) is None


def test_duplicate_email_raises_and_writes_nothing(db):
    users.create_user("Ada", "ada@example.org")

    with pytest.raises(users.DuplicateEmail):
        users.create_user("Impostor", "ADA@example.org")

    assert db.query("SELECT name FROM users ORDER BY id") == [("Ada",)]


def test_handlers_keep_working_after_a_failed_transaction(db):
    users.create_user("Ada", "ada@example.org")
    with pytest.raises(users.DuplicateEmail):
        users.create_user("Impostor", "ada@example.org")

    grace = users.create_user("Grace", "grace@example.org")

    assert users.get_user(grace)["name"] == "Grace"


def test_update_email_commits_change_and_audit_entry_together(db):
    user_id = users.create_user("Ada", "ada@example.org")

    assert users.update_email(user_id, "lovelace@example.org") is True

    assert db.query("SELECT email FROM users WHERE id = %s", (user_id,)) == [("lovelace@example.org",)]
    assert db.query("SELECT event, detail FROM audit_log") == [("email-changed", f"user {user_id}")]


def test_update_email_of_unknown_user_is_false_and_rolled_back(db):
    assert users.update_email(999, "nobody@example.org") is False
    assert db.query("SELECT count(*) FROM audit_log") == [(0,)]


def test_update_to_taken_email_rolls_back(db):
    ada = users.create_user("Ada", "ada@example.org")
    users.create_user("Grace", "grace@example.org")

    with pytest.raises(users.DuplicateEmail):
        users.update_email(ada, "grace@example.org")

    assert db.query("SELECT email FROM users WHERE id = %s", (ada,)) == [("ada@example.org",)]
    assert db.query("SELECT count(*) FROM audit_log") == [(0,)]


def test_list_users_in_creation_order_with_limit(db):
    for name in ("Ada", "Grace", "Edsger"):
        users.create_user(name, f"{name.lower()}@example.org")

    assert [u["name"] for u in users.list_users()] == ["Ada", "Grace", "Edsger"]
    assert users.list_users(limit=2) == [
        {"id": 1, "name": "Ada", "email": "ada@example.org"},
        {"id": 2, "name": "Grace", "email": "grace@example.org"},
    ]


def test_user_written_by_another_client_is_visible(db):
    db.query("INSERT INTO users (name, email) VALUES ('Barbara', 'barbara@example.org')")

    assert users.list_users()[0]["name"] == "Barbara"


def test_user_count_counts_committed_users(db):
    assert users.user_count() == 0
    users.create_user("Ada", "ada@example.org")
    assert users.user_count() == 1


def test_user_count_raises_on_a_bad_port_setting(db, app_env):
    """Its `except Exception` never saw the helper's int(POSTGRES_PORT) error: the caller gets it."""
    app_env.setenv("POSTGRES_PORT", "54x32")
    with pytest.raises(ValueError):
        users.user_count()
