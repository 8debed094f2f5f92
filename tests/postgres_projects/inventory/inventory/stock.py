import psycopg2

from inventory.database import open_connection


class OutOfStock(Exception):
    pass


def create_tables():
    conn = open_connection()
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE IF NOT EXISTS stock ("
        " sku text PRIMARY KEY, on_hand integer NOT NULL CHECK (on_hand >= 0))"
    )
    cur.execute(
        "CREATE TABLE IF NOT EXISTS movements ("
        " id serial PRIMARY KEY, sku text NOT NULL, delta integer NOT NULL, reason text NOT NULL)"
    )
    conn.commit()
    conn.close()


def receive(sku, quantity):
    conn = open_connection()
    cur = conn.cursor()
    cur.execute(
        "INSERT INTO stock (sku, on_hand) VALUES (%s, %s) "
        "ON CONFLICT (sku) DO UPDATE SET on_hand = stock.on_hand + EXCLUDED.on_hand",
        (sku, quantity),
    )
    cur.execute("INSERT INTO movements (sku, delta, reason) VALUES (%s, %s, 'received')", (sku, quantity))
    conn.commit()
    conn.close()


def ship(sku, quantity):
    conn = open_connection()
    try:
        cur = conn.cursor()
        cur.execute("SELECT on_hand FROM stock WHERE sku = %s FOR UPDATE", (sku,))
        row = cur.fetchone()
        if row is None or row[0] < quantity:
            raise OutOfStock(f"{sku}: {0 if row is None else row[0]} on hand, {quantity} requested")
        cur.execute("UPDATE stock SET on_hand = on_hand - %s WHERE sku = %s", (quantity, sku))
        cur.execute("INSERT INTO movements (sku, delta, reason) VALUES (%s, %s, 'shipped')", (sku, -quantity))
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.close()


def on_hand(sku):
    """Units on hand, or None when the database is unavailable (the shop shows "ask in store")."""
    conn = open_connection()
    if conn is None:
        return None
    try:
        cur = conn.cursor()
        cur.execute("SELECT on_hand FROM stock WHERE sku = %s", (sku,))
        row = cur.fetchone()
        return row[0] if row else 0
    except psycopg2.OperationalError:
        return None
    finally:
        conn.close()


def running_low(threshold):
    conn = open_connection()
    if not conn:
        return []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT sku FROM stock WHERE on_hand < %s ORDER BY sku", (threshold,))
            return [sku for (sku,) in cur.fetchall()]
    except psycopg2.OperationalError:
        return []
    finally:
        conn.close()


def history(sku):
    conn = open_connection()
    cur = conn.cursor()
    cur.execute("SELECT delta, reason FROM movements WHERE sku = %s ORDER BY id", (sku,))
    rows = cur.fetchall()
    conn.close()
    return rows
