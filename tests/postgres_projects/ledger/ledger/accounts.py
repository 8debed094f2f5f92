from decimal import Decimal

from psycopg2.extras import RealDictCursor

from ledger import db


class InsufficientFunds(Exception):
    pass


SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name text PRIMARY KEY,
    balance numeric(12, 2) NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS entries (
    id bigserial PRIMARY KEY,
    account text NOT NULL REFERENCES accounts (name),
    amount numeric(12, 2) NOT NULL,
    memo text NOT NULL
);
"""


def migrate():
    conn = db.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(SCHEMA)
    finally:
        conn.close()


def open_account(name, opening_balance=Decimal("0.00")):
    conn = db.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO accounts (name, balance) VALUES (%s, %s)", (name, opening_balance))
            if opening_balance:
                cur.execute(
                    "INSERT INTO entries (account, amount, memo) VALUES (%s, %s, 'opening balance')",
                    (name, opening_balance),
                )
    finally:
        conn.close()


def transfer(source, target, amount, memo):
    """Move money between two accounts in one transaction; nothing happens if the source is short."""
    conn = db.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE accounts SET balance = balance - %s WHERE name = %s AND balance >= %s",
                (amount, source, amount),
            )
            if cur.rowcount != 1:
                raise InsufficientFunds(f"{source} cannot pay {amount}")
            cur.execute("UPDATE accounts SET balance = balance + %s WHERE name = %s", (amount, target))
            cur.executemany(
                "INSERT INTO entries (account, amount, memo) VALUES (%s, %s, %s)",
                [(source, -amount, memo), (target, amount, memo)],
            )
    finally:
        conn.close()


def balance(name):
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT balance FROM accounts WHERE name = %s", (name,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def statement(name):
    """The account's entries as dicts, oldest first (the API serializes them as they are)."""
    conn = db.connect(cursor_factory=RealDictCursor)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT amount, memo FROM entries WHERE account = %s ORDER BY id", (name,))
            return cur.fetchall()
    finally:
        conn.close()


def application_name():
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('application_name')")
            return cur.fetchone()[0]
    finally:
        conn.close()
