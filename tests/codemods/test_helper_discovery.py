"""Legacy helpers are found by what they do: any function returning a connection, whatever its name.

Real projects name their helper ``get_db_connection``, ``connect`` or ``Database.open``, give it
parameters, wrap it in ``try``/``except`` returning ``None``, and build a second helper on top of the first;
every one of those must be found, and nothing that merely looks similar.
"""

from __future__ import annotations

from pathlib import Path

from codemods.legacy_helpers.discovery import find_helpers, helper_shapes
from codemods.project import load_project

DB = """\
import os

import psycopg2 as psycopg
from dotenv import load_dotenv

load_dotenv(".env.local")
DEFAULTS = {"connect_timeout": 5}


def connect(**kwargs):
    kw = {**DEFAULTS, "dbname": os.environ.get("POSTGRES_DATABASE", "app"), **kwargs}
    return psycopg.connect(**kw)


def get_db_connection(dsn=None, *, timeout=5):
    try:
        conn = psycopg.connect(dsn, connect_timeout=timeout)
    except psycopg.OperationalError:
        return None
    conn.autocommit = True
    return conn


def get_db():
    return connect(application_name="api")


class Database:
    def open(self):
        return psycopg.connect("")

    def cursor(self):
        return self.open().cursor()


def not_a_helper_cursor(dsn):
    return psycopg.connect(dsn).cursor()


def not_a_helper_mixed(dsn, flag):
    if flag:
        return "disabled"
    return psycopg.connect(dsn)


def not_a_helper_generator(dsn):
    yield psycopg.connect(dsn)


def outer():
    def inner():
        return psycopg.connect("")

    return inner
"""

API = """\
from .db import get_db


def request_connection():
    conn = None
    conn = get_db()
    return conn


def unrelated():
    return 1
"""

JOBS = """\
from app.api import request_connection as rc
import sqlite3


def job_connection():
    return rc()


def sqlite_connection():
    return sqlite3.connect("x.db")
"""

SOURCES = {"app/db.py": DB, "app/api.py": API, "app/jobs.py": JOBS}
NAMES = {"app/db.py": "app.db", "app/api.py": "app.api", "app/jobs.py": "app.jobs"}


def test_every_shape_of_helper_is_found_and_nothing_else() -> None:
    found = {helper.name: helper for helper in find_helpers(SOURCES, NAMES)}
    assert sorted(found) == [
        "app.api.request_connection",
        "app.db.Database.open",
        "app.db.connect",
        "app.db.get_db",
        "app.db.get_db_connection",
        "app.jobs.job_connection",
    ]
    assert found["app.db.connect"].returns_from == ("psycopg2.connect",)
    assert found["app.db.get_db"].returns_from == ("app.db.connect",)
    assert found["app.api.request_connection"].returns_from == ("app.db.get_db",)
    assert found["app.jobs.job_connection"].returns_from == ("app.api.request_connection",)
    assert (found["app.db.get_db_connection"].path, found["app.db.get_db_connection"].line) == (
        "app/db.py",
        15,
    )


def test_a_helper_already_pooled_by_ps100_is_still_a_helper() -> None:
    source = "import db_utils.postgres\n\n\ndef get_conn():\n    return db_utils.postgres.connect('')\n"
    assert [h.name for h in find_helpers({"app/db.py": source}, {"app/db.py": "app.db"})] == [
        "app.db.get_conn"
    ]


def test_transitive_helper_in_a_file_that_never_says_connect(tmp_path: Path) -> None:
    """jobs.py mentions neither psycopg2 nor connect: it is found through the helper's own name."""
    sources = {
        "app/db.py": "import psycopg2\n\n\ndef open_db():\n    return psycopg2.connect('')\n",
        "app/jobs.py": "from app.db import open_db\n\n\ndef job_db():\n    return open_db()\n",
    }
    names = {"app/db.py": "app.db", "app/jobs.py": "app.jobs"}
    assert [h.name for h in find_helpers(sources, names)] == ["app.db.open_db", "app.jobs.job_db"]


def test_configured_helpers_add_to_the_discovered_ones(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "db.py").write_text(DB)
    (tmp_path / "app" / "pool.py").write_text("def borrow():\n    return POOL.getconn()\n")
    (tmp_path / "pyproject.toml").write_text('[tool.poolshift]\nlegacy_helpers = ["app.pool.borrow"]\n')
    project = load_project([tmp_path])
    assert "app.pool.borrow" in project.legacy_helpers
    assert "app.db.get_db_connection" in project.legacy_helpers
    configured = next(h for h in project.found_helpers if h.name == "app.pool.borrow")
    assert configured.path == ""


def test_a_helper_calling_connect_under_an_alias_is_found() -> None:
    source = "from psycopg2 import connect as pg_open\n\n\ndef get_conn():\n    return pg_open('')\n"
    assert [h.name for h in find_helpers({"app/db.py": source}, {"app/db.py": "app.db"})] == [
        "app.db.get_conn"
    ]


def test_the_ast_summary_keeps_every_function_that_may_be_a_helper_and_only_those() -> None:
    source = """\
import psycopg2
from app.db import open_db as od


def direct():
    return psycopg2.connect('')


def through_a_name(flag):
    conn = None
    if flag:
        conn = od()
    return conn


def failure_path():
    try:
        return psycopg2.connect('')
    except psycopg2.Error:
        return


def returns_a_cursor():
    return psycopg2.connect('').cursor()


def returns_other(flag):
    if flag:
        return 'off'
    return psycopg2.connect('')


def returns_a_parameter(conn):
    return conn


def nested_returns_are_its_own():
    def inner():
        return 1

    return psycopg2.connect('')
"""
    assert helper_shapes(source) == [
        [["connect"]],
        [["od", "open_db"]],
        [["connect"]],
        [["cursor"]],
        [["connect"]],
    ]
    assert helper_shapes("def broken(:\n") == []


def test_discovery_answers_are_cached_and_follow_edits(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "db.py").write_text(DB)
    cold = load_project([tmp_path])
    tables = sorted(path.name for path in (tmp_path / ".poolshift_cache").rglob("*.json"))
    assert tables == ["function_returns.json", "helper_shapes.json"]
    assert load_project([tmp_path]).found_helpers == cold.found_helpers
    (tmp_path / "app" / "db.py").write_text(DB.replace("def get_db():", "def get_database():"))
    edited = load_project([tmp_path]).legacy_helpers
    assert "app.db.get_database" in edited
    assert "app.db.get_db" not in edited
    assert load_project([tmp_path], cache=False).legacy_helpers == edited


def test_a_file_over_the_size_limit_is_not_parsed_for_helpers(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "db.py").write_text("import psycopg2\n\n\ndef open_db():\n    return psycopg2.connect('')\n")
    assert load_project([tmp_path], cache=False).legacy_helpers == ("db.open_db",)
    assert load_project([tmp_path], cache=False, max_bytes=32).legacy_helpers == ()
