"""Number crunching for reports, done in a throwaway in-memory SQLite database because SQL was what the
analysts knew. Nothing here touches disk or PostgreSQL."""

import sqlite3


def cents_to_dollars(cents):
    """12345 -> '123.45' (SQL function ``dollars``)."""
    if cents is None:
        return None
    return "%d.%02d" % divmod(int(cents), 100)


def summarize_orders(rows):
    """Per-user totals from order lines.

    ``rows`` are dicts with user_id, name, order_id, quantity and price_cents. Returns dicts with user_id,
    name, orders, items, total_cents and total (formatted), biggest spender first.
    """
    conn = sqlite3.connect(":memory:")
    conn.create_function("dollars", 1, cents_to_dollars)
    try:
        conn.execute(
            "CREATE TABLE lines "
            "(user_id INTEGER, name TEXT, order_id INTEGER, quantity INTEGER, price_cents INTEGER)"
        )
        conn.executemany(
            "INSERT INTO lines VALUES (:user_id, :name, :order_id, :quantity, :price_cents)",
            rows,
        )
        cur = conn.execute(
            """
            SELECT user_id, name, COUNT(DISTINCT order_id), SUM(quantity),
                   SUM(quantity * price_cents) AS total_cents, dollars(SUM(quantity * price_cents))
            FROM lines GROUP BY user_id, name ORDER BY total_cents DESC, user_id
            """
        )
        keys = ("user_id", "name", "orders", "items", "total_cents", "total")
        return [dict(zip(keys, row)) for row in cur.fetchall()]
    finally:
        conn.close()
