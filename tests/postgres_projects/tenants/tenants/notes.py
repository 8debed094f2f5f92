from tenants.db import get_connection


def add_note(tenant, author, body):
    conn = get_connection(tenant)
    try:
        cur = conn.cursor()
        cur.execute("INSERT INTO notes (author, body) VALUES (%s, %s) RETURNING id", (author, body))
        note_id = cur.fetchone()[0]
        conn.commit()
        return note_id
    finally:
        conn.close()


def list_notes(tenant):
    conn = get_connection(tenant)
    try:
        cur = conn.cursor()
        cur.execute("SELECT author, body FROM notes ORDER BY id")
        return cur.fetchall()
    finally:
        conn.close()


def current_database(tenant):
    conn = get_connection(tenant)
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_database()")
        return cur.fetchone()[0]
    finally:
        conn.close()
