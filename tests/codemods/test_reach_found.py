"""What running poolshift on real public projects found in files the reach task does not own.

Each test is the smallest synthetic reproduction (our own code, not the project's) of what was observed,
run through the real CLI. A bug not fixed yet is marked ``xfail(strict=True)``: the owner's fix flips it to
a pass, and then the marker comes off (as it has for every test here).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.codemods.test_cli import poolshift

# The FastAPI dependency idiom (CloudTribe has five of them): the connection is yielded to the request.
YIELDED_DEPENDENCY = b"""\
import psycopg2


def get_db_connection():
    return psycopg2.connect("")


def get_db():
    conn = get_db_connection()
    try:
        yield conn
    finally:
        conn.close()
"""


def test_a_yielded_connection_is_reported_as_escaping_not_as_a_missing_guard(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "db.py").write_bytes(YIELDED_DEPENDENCY)
    completed = poolshift("scan", "app", "--format", "json", "--no-cache", "-j", "1", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr.decode()
    sites = json.loads(completed.stdout)["sites"]
    (pooled,) = [site for site in sites if site["rule"] == "PS101"]
    assert (pooled["line"], pooled["status"]) == (9, "reported")
    assert pooled["reason"] == "conn-escapes-scope"
