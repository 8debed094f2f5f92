from salesreports.db import connect


def setup():
    conn = connect()
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE IF NOT EXISTS sales ("
        " id serial PRIMARY KEY, region text NOT NULL, amount_cents integer NOT NULL, sold_on date NOT NULL)"
    )
    conn.commit()
    conn.close()


def record_sale(region, amount_cents, sold_on):
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute(
            "INSERT INTO sales (region, amount_cents, sold_on) VALUES (%s, %s, %s)",
            (region, amount_cents, sold_on),
        )
        conn.commit()
    finally:
        conn.close()


def revenue_by_region(year):
    conn = connect()
    try:
        # reports never write: a bug here must not be able to change the books
        conn.set_session(readonly=True)
        cur = conn.cursor()
        cur.execute(
            "SELECT region, sum(amount_cents) FROM sales WHERE extract(year FROM sold_on) = %s "
            "GROUP BY region ORDER BY sum(amount_cents) DESC, region",
            (year,),
        )
        return dict(cur.fetchall())
    finally:
        conn.close()


def best_month(region):
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT to_char(sold_on, 'YYYY-MM') AS month FROM sales WHERE region = %s "
            "GROUP BY month ORDER BY sum(amount_cents) DESC, month LIMIT 1",
            (region,),
        )
        row = cur.fetchone()
        return row[0] if row else None
    finally:
        conn.close()
