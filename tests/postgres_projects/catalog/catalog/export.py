"""Partner exports: a caller-chosen set of columns, with exact prices from the jsonb specs."""

import json
from decimal import Decimal
from functools import partial

from psycopg2 import sql
from psycopg2.extras import register_default_jsonb

from catalog.db import get_conn

EXPORTABLE = ("sku", "name", "price", "specs")


def _prepare_export(conn, columns):
    """Quote the requested columns for this connection and decode jsonb with exact decimals."""
    unknown = set(columns) - set(EXPORTABLE)
    if unknown:
        raise ValueError(f"not exportable: {', '.join(sorted(unknown))}")
    register_default_jsonb(conn, loads=partial(json.loads, parse_float=Decimal))
    return ", ".join(sql.Identifier(column).as_string(conn) for column in columns)


def export_products(columns):
    conn = get_conn()
    try:
        column_list = _prepare_export(conn, columns)
        cur = conn.cursor()
        cur.execute(f"SELECT {column_list} FROM products ORDER BY sku")
        return [dict(zip(columns, row)) for row in cur.fetchall()]
    finally:
        conn.close()


def shipping_specs(sku):
    """The raw specs for the shipping calculator, which works in floats."""
    conn = get_conn()
    try:
        cur = conn.cursor()
        cur.execute("SELECT specs FROM products WHERE sku = %s", (sku,))
        row = cur.fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def add_product(sku, name, price, specs):
    conn = get_conn()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO products (sku, name, price, specs) VALUES (%s, %s, %s, %s)",
                (sku, name, price, json.dumps(specs)),
            )
    finally:
        conn.close()
