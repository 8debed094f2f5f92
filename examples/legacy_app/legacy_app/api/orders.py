"""Order handlers."""

import psycopg2

from .. import cache
from ..db import fetch_one
from ..db import get_postgres_connection as get_conn


class OrderError(Exception):
    """The order could not be placed; nothing was written."""


def _add_items(conn, order_id, items):
    """Insert the order lines on the caller's connection (same transaction). Prices come from products."""
    cur = conn.cursor()
    for sku, quantity in items:
        cur.execute("SELECT price_cents FROM products WHERE sku = %s", (sku,))
        row = cur.fetchone()
        if row is None:
            raise OrderError("unknown product %s" % sku)
        cur.execute(
            "INSERT INTO order_items (order_id, sku, quantity, price_cents) VALUES (%s, %s, %s, %s)",
            (order_id, sku, quantity, row[0]),
        )
    cur.close()


def place_order(user_id, items):
    """Create an order with its lines in one transaction and return the order id.

    Returns None when the database is down. Raises OrderError (after rolling back everything) for an
    unknown user, an unknown product or a bad quantity.
    """
    if not items:
        raise OrderError("an order needs at least one item")
    conn = get_conn()
    if not conn:
        return None
    try:
        cur = conn.cursor()
        cur.execute("INSERT INTO orders (user_id) VALUES (%s) RETURNING id", (user_id,))
        order_id = cur.fetchone()[0]
        _add_items(conn, order_id, items)
        conn.commit()
        cache.delete("orders:user:%s" % user_id)
        return order_id
    except psycopg2.IntegrityError as e:
        conn.rollback()
        raise OrderError(str(e).splitlines()[0])
    except OrderError:
        conn.rollback()
        raise
    finally:
        conn.close()


def get_order(order_id):
    """The order with its lines, or None."""
    conn = get_conn()
    if conn is None:
        return None
    try:
        order = fetch_one(conn, "SELECT id, user_id, status FROM orders WHERE id = %s", (order_id,))
        if order is None:
            return None
        with conn.cursor() as cur:
            cur.execute(
                "SELECT sku, quantity, price_cents FROM order_items WHERE order_id = %s ORDER BY sku",
                (order_id,),
            )
            order["items"] = [{"sku": r[0], "quantity": r[1], "price_cents": r[2]} for r in cur.fetchall()]
        return order
    finally:
        conn.close()


def order_total(order_id):
    """Total of an order in cents (0 for an unknown order).

    NOTE: this one never closes its connection; it has been in production like that for years and the
    garbage collector has been cleaning up after it.
    """
    conn = get_conn()
    cur = conn.cursor()
    cur.execute(
        "SELECT COALESCE(SUM(quantity * price_cents), 0) FROM order_items WHERE order_id = %s",
        (order_id,),
    )
    return int(cur.fetchone()[0])


def cancel_order(order_id):
    """Mark an order cancelled. True if it was open (status 'new'), False otherwise."""
    conn = get_conn()
    if conn is None:
        return False
    with conn:
        with conn.cursor() as cur:
            cur.execute(
                "UPDATE orders SET status = 'cancelled' WHERE id = %s AND status = 'new'",
                (order_id,),
            )
            changed = cur.rowcount == 1
            if changed:
                cur.execute(
                    "INSERT INTO audit_log (event, detail) VALUES (%s, %s)",
                    ("order-cancelled", "order %s" % order_id),
                )
    conn.close()
    return changed


def orders_for_user(user_id):
    """Order ids and statuses of a user, newest first, cached for a minute."""
    key = "orders:user:%s" % user_id
    cached = cache.get(key)
    if cached is not None:
        return cached
    conn = get_conn()
    if not conn:
        return []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, status FROM orders WHERE user_id = %s ORDER BY id DESC", (user_id,))
            result = [{"id": r[0], "status": r[1]} for r in cur.fetchall()]
    finally:
        conn.close()
    cache.set(key, result, ttl=60)
    return result
