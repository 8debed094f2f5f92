"""HTTP handlers. The web layer passes a dict with "params" and "body" and sends back (status, payload)."""

import psycopg2

from helpdesk.db import get_db_connection

PRIORITIES = ("low", "normal", "high", "urgent")


def create_ticket(request):
    body = request["body"]
    priority = body.get("priority", "normal")
    if priority not in PRIORITIES:
        return 400, {"error": f"unknown priority {priority!r}"}
    conn = get_db_connection()
    try:
        cur = conn.cursor()
        cur.execute(
            "INSERT INTO tickets (subject, requester, priority) VALUES (%s, %s, %s) RETURNING id",
            (body["subject"], body["requester"], priority),
        )
        ticket_id = cur.fetchone()[0]
        conn.commit()
    except psycopg2.IntegrityError:
        conn.rollback()
        return 409, {"error": "this requester already has a ticket with that subject"}
    finally:
        conn.close()
    return 201, {"id": ticket_id}


def get_ticket(request):
    conn = get_db_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT id, subject, requester, priority, status FROM tickets WHERE id = %s",
                (request["params"]["id"],),
            )
            row = cur.fetchone()
            if row is None:
                return 404, {"error": "no such ticket"}
            cur.execute("SELECT author, body FROM comments WHERE ticket_id = %s ORDER BY id", (row[0],))
            comments = [{"author": a, "body": b} for a, b in cur.fetchall()]
    finally:
        conn.close()
    keys = ("id", "subject", "requester", "priority", "status")
    return 200, {**dict(zip(keys, row)), "comments": comments}


def add_comment(request):
    # `with conn` commits on success and rolls back on error.
    with get_db_connection() as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT status FROM tickets WHERE id = %s FOR UPDATE", (request["params"]["id"],))
            row = cur.fetchone()
            if row is None:
                return 404, {"error": "no such ticket"}
            if row[0] == "closed":
                return 409, {"error": "ticket is closed"}
            cur.execute(
                "INSERT INTO comments (ticket_id, author, body) VALUES (%s, %s, %s)",
                (request["params"]["id"], request["body"]["author"], request["body"]["body"]),
            )
    return 201, {}


def close_ticket(request):
    conn = get_db_connection()
    try:
        cur = conn.cursor()
        cur.execute(
            "UPDATE tickets SET status = 'closed' WHERE id = %s AND status <> 'closed' RETURNING id",
            (request["params"]["id"],),
        )
        closed = cur.fetchone()
        conn.commit()
    finally:
        conn.close()
    if closed is None:
        return 404, {"error": "no open ticket with that id"}
    return 200, {"id": closed[0], "status": "closed"}


def open_queue(request):
    """Open tickets, most urgent first, oldest first within a priority."""
    conn = get_db_connection()
    cur = conn.cursor()
    cur.execute(
        "SELECT id, subject, priority FROM tickets WHERE status = 'open' "
        "ORDER BY array_position(%s, priority) DESC, opened_at, id",
        (list(PRIORITIES),),
    )
    rows = cur.fetchall()
    cur.close()
    conn.close()
    return 200, [{"id": i, "subject": s, "priority": p} for i, s, p in rows]
