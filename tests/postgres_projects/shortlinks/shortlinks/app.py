"""WSGI app. Deployed behind gunicorn with DATABASE_URL set (Heroku style)."""

import json
import os
import re

import psycopg2
import psycopg2.errors

CODE = re.compile(r"^[A-Za-z0-9_-]{3,32}$")


def _json(start_response, status, payload, headers=()):
    body = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers]
    )
    return [body]


def _read_json(environ):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return json.loads(environ["wsgi.input"].read(length) or b"{}")


def create_link(environ, start_response):
    data = _read_json(environ)
    code, target = data.get("code", ""), data.get("target", "")
    if not CODE.match(code) or not target.startswith(("http://", "https://")):
        return _json(start_response, "400 Bad Request", {"error": "invalid code or target"})
    conn = psycopg2.connect(os.environ["DATABASE_URL"])
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO links (code, target) VALUES (%s, %s)", (code, target))
        conn.commit()
    except psycopg2.errors.UniqueViolation:
        return _json(start_response, "409 Conflict", {"error": f"{code} is taken"})
    finally:
        conn.close()
    return _json(start_response, "201 Created", {"code": code, "target": target})


def follow_link(environ, start_response, code):
    conn = psycopg2.connect(os.environ["DATABASE_URL"])
    try:
        cur = conn.cursor()
        cur.execute("UPDATE links SET hits = hits + 1 WHERE code = %s RETURNING target", (code,))
        row = cur.fetchone()
        conn.commit()
    finally:
        conn.close()
    if row is None:
        return _json(start_response, "404 Not Found", {"error": "unknown link"})
    start_response("302 Found", [("Location", row[0]), ("Content-Length", "0")])
    return [b""]


def link_stats(environ, start_response, code):
    dsn = os.environ["DATABASE_URL"]
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute("SELECT target, hits, created_at::date::text FROM links WHERE code = %s", (code,))
        row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        return _json(start_response, "404 Not Found", {"error": "unknown link"})
    return _json(
        start_response, "200 OK", {"code": code, "target": row[0], "hits": row[1], "created": row[2]}
    )


def delete_link(environ, start_response, code):
    conn = psycopg2.connect(os.environ["DATABASE_URL"])
    with conn:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM links WHERE code = %s", (code,))
            deleted = cur.rowcount
    conn.close()
    if not deleted:
        return _json(start_response, "404 Not Found", {"error": "unknown link"})
    start_response("204 No Content", [])
    return [b""]


def top_links(environ, start_response):
    with psycopg2.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT code, hits FROM links ORDER BY hits DESC, code LIMIT 10")
        rows = cur.fetchall()
    return _json(start_response, "200 OK", [{"code": code, "hits": hits} for code, hits in rows])


def health(environ, start_response):
    conn = psycopg2.connect(os.environ["DATABASE_URL"])
    try:
        payload = {"database": conn.info.dbname, "server_version": conn.server_version}
        conn.cursor().execute("SELECT 1")
    finally:
        conn.close()
    return _json(start_response, "200 OK", payload)


def application(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
    if path == "/links" and method == "POST":
        return create_link(environ, start_response)
    if path == "/top" and method == "GET":
        return top_links(environ, start_response)
    if path == "/health" and method == "GET":
        return health(environ, start_response)
    if path.startswith("/stats/") and method == "GET":
        return link_stats(environ, start_response, path[len("/stats/") :])
    if method == "GET" and path.count("/") == 1:
        return follow_link(environ, start_response, path[1:])
    if method == "DELETE" and path.count("/") == 1:
        return delete_link(environ, start_response, path[1:])
    return _json(start_response, "404 Not Found", {"error": "no route"})
