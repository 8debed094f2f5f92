"""Price sync: pull the price list from the catalogue service and upsert it into ``products``.

All-or-nothing: one bad price aborts the whole sync (the ``with conn:`` block rolls back), because a
half-updated price list is worse than a stale one.
"""

import json
import logging
import os
import urllib.request as ur
from urllib.error import HTTPError

import psycopg2

from legacy_app import clients, db

log = logging.getLogger(__name__)


class SyncError(Exception):
    pass


def fetch_price_list():
    url = os.environ.get("SERVICE_URL", "http://127.0.0.1:8080").rstrip("/") + "/prices"
    req = ur.Request(url, headers={"Accept": "application/json", "User-Agent": clients.USER_AGENT})
    try:
        # Kept on urllib on purpose: one request a night, so a pooled connection buys nothing.
        # poolshift: ignore[PS301]
        with ur.urlopen(req, timeout=10) as resp:
            return json.load(resp)["prices"]
    except HTTPError as e:
        raise SyncError("price list unavailable: HTTP %s" % e.code)


def run():
    """Upsert every price; returns how many products were written."""
    prices = fetch_price_list()
    conn = db.get_postgres_connection()
    if conn is None:
        raise SyncError("database unavailable")
    try:
        with conn:
            with conn.cursor() as cur:
                for item in prices:
                    cur.execute(
                        """
                        INSERT INTO products (sku, name, price_cents) VALUES (%s, %s, %s)
                        ON CONFLICT (sku) DO UPDATE
                        SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents, updated_at = now()
                        """,
                        (item["sku"], item["name"], item["price_cents"]),
                    )
    except psycopg2.IntegrityError as e:
        raise SyncError("price list rejected: %s" % str(e).splitlines()[0])
    finally:
        conn.close()
    clients.post_json("/events", {"type": "prices-synced", "count": len(prices)})
    log.info("synced %d prices", len(prices))
    return len(prices)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run()
