"""Product handlers: local database first, then the catalogue service, with a cache in front."""

import logging

import psycopg2

import legacy_app.db
from legacy_app import cache, clients

log = logging.getLogger(__name__)

PRODUCT_TTL = 300


def _from_database(sku):
    conn = legacy_app.db.get_postgres_connection()
    if not conn:
        return None
    try:
        cur = conn.cursor()
        cur.execute("SELECT sku, name, price_cents FROM products WHERE sku = %s", (sku,))
        row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    return {"sku": row[0], "name": row[1], "price_cents": row[2], "source": "database"}


def product_count():
    """How many products we sell; None when the database cannot answer (the dashboard shows a dash)."""
    conn = legacy_app.db.get_postgres_connection()
    if not conn:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM products")
            return cur.fetchone()[0]
    except psycopg2.Error:
        return None
    finally:
        conn.close()


def get_product(sku):
    """The product, from cache, database or catalogue (in that order); None if nobody knows it.

    A catalogue outage is not an error for the shop page: it logs and answers None. A catalogue *error*
    (HTTP 5xx) propagates as clients.ServiceError so the web layer returns 502.
    """
    key = "product:%s" % sku
    product = cache.get(key)
    if product is not None:
        return product
    product = _from_database(sku)
    if product is None:
        try:
            remote = clients.get_product(sku)
        except clients.ServiceUnavailable as e:
            log.warning("catalogue unavailable: %s", e)
            return None
        if remote is None:
            return None
        product = {"sku": remote["sku"], "name": remote["name"], "price_cents": remote["price_cents"]}
        product["source"] = "catalogue"
    cache.set(key, product, ttl=PRODUCT_TTL)
    return product


def search(prefix, limit=20):
    """Products whose name starts with ``prefix`` (case-insensitive), cheapest first."""
    conn = legacy_app.db.get_postgres_connection()
    if conn is None:
        return []
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT sku, name, price_cents FROM products WHERE name ILIKE %s "
                "ORDER BY price_cents, sku LIMIT %s",
                (prefix.replace("%", r"\%").replace("_", r"\_") + "%", limit),
            )
            return [{"sku": r[0], "name": r[1], "price_cents": r[2]} for r in cur.fetchall()]
    finally:
        conn.close()
