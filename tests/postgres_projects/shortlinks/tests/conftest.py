import io
import json
import os
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import psycopg2
import pytest

SCHEMA = Path(__file__).resolve().parents[1] / "shortlinks" / "schema.sql"


class Client:
    """Calls the WSGI app in-process, the way the load balancer would."""

    def __init__(self, app):
        self.app = app

    def request(self, method, path, payload=None):
        body = b"" if payload is None else json.dumps(payload).encode()
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": str(len(body))}
        setup_testing_defaults(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        captured = {}

        def start_response(status, headers):
            captured["status"] = int(status.split()[0])
            captured["headers"] = dict(headers)

        content = b"".join(self.app(environ, start_response))
        return captured["status"], captured["headers"], json.loads(content) if content else None


@pytest.fixture(scope="session")
def database_url():
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set")
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(SCHEMA.read_text())
    conn.close()
    return url


@pytest.fixture
def client(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    conn = psycopg2.connect(database_url)
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE links")
    conn.close()
    from shortlinks.app import application

    return Client(application)
