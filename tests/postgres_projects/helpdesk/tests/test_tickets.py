import psycopg2
import pytest
from helpdesk import handlers


def new_ticket(subject, requester="ana@example.com", priority="normal"):
    status, payload = handlers.create_ticket(
        {"body": {"subject": subject, "requester": requester, "priority": priority}}
    )
    assert status == 201
    return payload["id"]


def test_create_and_fetch_ticket():
    ticket_id = new_ticket("VPN drops every hour", priority="high")
    status, ticket = handlers.get_ticket({"params": {"id": ticket_id}})
    assert status == 200
    assert ticket == {
        "id": ticket_id,
        "subject": "VPN drops every hour",
        "requester": "ana@example.com",
        "priority": "high",
        "status": "open",
        "comments": [],
    }


def test_unknown_priority_is_rejected_before_touching_the_database():
    status, payload = handlers.create_ticket({"body": {"subject": "x", "requester": "y", "priority": "asap"}})
    assert status == 400
    assert "asap" in payload["error"]


def test_duplicate_ticket_is_a_conflict_and_leaves_the_first_one():
    first = new_ticket("Printer on fire")
    status, _ = handlers.create_ticket(
        {"body": {"subject": "Printer on fire", "requester": "ana@example.com"}}
    )
    assert status == 409
    # the failed insert was rolled back: the next ticket still works and the first is intact
    second = new_ticket("Printer still on fire")
    assert second > first
    assert handlers.get_ticket({"params": {"id": first}})[1]["subject"] == "Printer on fire"


def test_comments_are_listed_in_order():
    ticket_id = new_ticket("Laptop will not boot")
    for body in ("Tried safe mode", "Replaced the battery"):
        assert (
            handlers.add_comment({"params": {"id": ticket_id}, "body": {"author": "bo", "body": body}})[0]
            == 201
        )
    _, ticket = handlers.get_ticket({"params": {"id": ticket_id}})
    assert [c["body"] for c in ticket["comments"]] == ["Tried safe mode", "Replaced the battery"]


def test_closed_ticket_takes_no_comments_and_leaves_the_queue():
    keep = new_ticket("Mailbox full", priority="low")
    done = new_ticket("Password reset", priority="urgent")
    assert handlers.close_ticket({"params": {"id": done}}) == (200, {"id": done, "status": "closed"})
    assert handlers.close_ticket({"params": {"id": done}})[0] == 404
    assert handlers.add_comment({"params": {"id": done}, "body": {"author": "bo", "body": "hi"}})[0] == 409
    assert [t["id"] for t in handlers.open_queue({})[1]] == [keep]


def test_queue_is_sorted_by_priority():
    low = new_ticket("Desk lamp", priority="low")
    urgent = new_ticket("Site down", priority="urgent")
    normal = new_ticket("New monitor")
    status, queue = handlers.open_queue({})
    assert status == 200
    assert [t["id"] for t in queue] == [urgent, normal, low]


def test_missing_ticket():
    assert handlers.get_ticket({"params": {"id": 999}})[0] == 404
    assert handlers.add_comment({"params": {"id": 999}, "body": {"author": "a", "body": "b"}})[0] == 404


def test_a_wrong_database_name_fails_fast_with_the_driver_error(monkeypatch):
    monkeypatch.setenv("HELPDESK_DB_NAME", "helpdesk_typo")
    with pytest.raises(psycopg2.OperationalError, match='database "helpdesk_typo" does not exist'):
        handlers.open_queue({})
    monkeypatch.undo()
    assert handlers.open_queue({}) == (200, [])
