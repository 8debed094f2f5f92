"""Helper discovery, remaining references and the "is it equivalent to the shim" analysis."""

from __future__ import annotations

import pytest

from codemods.legacy_helpers.discovery import absolute_name, discover_legacy_helpers, prefilter_names
from codemods.legacy_helpers.equivalence import analyse_legacy_helpers, helper_differences
from codemods.legacy_helpers.references import find_legacy_references

HELPER = "app.db.get_postgres_connection"

EQUIVALENT = '''
import os
import psycopg2

def get_postgres_connection():
    """doc"""
    try:
        return psycopg2.connect(
            host=os.environ.get("POSTGRES_HOST", "localhost"),
            port=int(os.environ.get("POSTGRES_PORT", 5432)),
            database=os.getenv("POSTGRES_DB", "postgres"),
            user=os.getenv("POSTGRES_USER", os.getenv("PGUSER", "postgres")),
            password=os.environ.get("POSTGRES_PASSWORD", ""),
        )
    except Exception as exc:
        print("cannot connect", exc)
        return None
'''


def _variant(old: str, new: str) -> str:
    assert old in EQUIVALENT
    return EQUIVALENT.replace(old, new)


def test_equivalent_helper_has_no_differences() -> None:
    assert helper_differences(EQUIVALENT, "get_postgres_connection") == ()


def test_missing_definition_is_none() -> None:
    assert helper_differences(EQUIVALENT, "other") is None
    assert helper_differences("def broken(:\n", "get_postgres_connection") is None


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('"localhost"', '"db.internal"', 'host defaults to "db.internal"'),
        ('"POSTGRES_HOST"', '"DB_HOST"', "host is read from DB_HOST"),
        ('int(os.environ.get("POSTGRES_PORT", 5432))', "6432", "port is `6432`"),
        ('os.getenv("POSTGRES_DB", "postgres")', 'os.environ["POSTGRES_DB"]', "dbname is `os.environ"),
        (
            "        )\n    except",
            "            connect_timeout=5,\n        )\n    except",
            "connect_timeout=5",
        ),
        ("except Exception as exc", "except ValueError as exc", "may not catch a failed connect"),
        ("        return None", "        raise", "does more than log and return None"),
        ('print("cannot connect", exc)', "exc.conn.close()", "does more than log"),
        ("def get_postgres_connection():", "def get_postgres_connection(timeout=5):", "takes parameters"),
        ("        return psycopg2.connect(", "        return other.connect(", "not psycopg2.connect"),
        ("    try:\n", "    os.environ.setdefault('PGAPPNAME', 'x')\n    try:\n", "before connecting"),
        ('            password=os.environ.get("POSTGRES_PASSWORD", ""),\n', "", "does not pass password"),
    ],
)
def test_each_difference_is_named(old: str, new: str, expected: str) -> None:
    differences = helper_differences(_variant(old, new), "get_postgres_connection")
    assert differences, "a changed helper must not be called equivalent"
    assert any(expected in difference for difference in differences), differences


def test_every_branch_of_an_elif_chain_in_the_handler_is_checked() -> None:
    handler = (
        "        if exc.pgcode:\n"
        "            print('server said no')\n"
        "        elif exc.pgerror:\n"
        "            print('client said no')\n"
        "        else:\n"
        "            exc.cursor.close()\n"
    )
    differences = helper_differences(
        _variant('        print("cannot connect", exc)\n', handler), "get_postgres_connection"
    )
    assert any("does more than log" in difference for difference in differences or ()), differences


def test_one_line_blocks_read_like_indented_ones() -> None:
    one_line = _variant(
        '    except Exception as exc:\n        print("cannot connect", exc)\n        return None\n',
        "    except Exception: return None\n",
    )
    assert helper_differences(one_line, "get_postgres_connection") == ()


def test_the_shim_side_of_the_comparison_is_db_utils_own_table() -> None:
    """A helper written from ``LEGACY_PARAMETERS`` is equivalent; dropping any parameter is named."""
    from db_utils.postgres.settings import LEGACY_PARAMETERS, LegacyParameter

    def helper(parameters: tuple[LegacyParameter, ...]) -> str:
        arguments = "".join(
            f"            {p.keyword}=os.getenv({p.variable!r}, "
            f"os.getenv({p.libpq_variable!r}, {p.default!r})),\n"
            for p in parameters
        )
        return (
            "import os\nimport psycopg2\n\ndef get_postgres_connection():\n    try:\n"
            f"        return psycopg2.connect(\n{arguments}        )\n"
            "    except psycopg2.OperationalError:\n        return None\n"
        )

    assert helper_differences(helper(LEGACY_PARAMETERS), "get_postgres_connection") == ()
    for dropped in LEGACY_PARAMETERS:
        kept = tuple(p for p in LEGACY_PARAMETERS if p is not dropped)
        assert helper_differences(helper(kept), "get_postgres_connection") == (
            f"it does not pass {dropped.keyword} (the shim reads {dropped.variable})",
        )


def test_settings_function_and_assigned_connection_are_followed() -> None:
    source = '''
import os
import psycopg2

def _settings():
    """Read on every call."""
    return {"host": os.getenv("POSTGRES_HOST", "localhost"), "port": os.getenv("POSTGRES_PORT", "5432"),
            "dbname": os.getenv("POSTGRES_DB", "postgres"), "user": os.getenv("POSTGRES_USER", "postgres"),
            "password": os.getenv("POSTGRES_PASSWORD")}

def get_postgres_connection():
    settings = _settings()
    try:
        conn = psycopg2.connect(**settings)
    except psycopg2.OperationalError:
        return None
    return conn
'''
    assert helper_differences(source, "get_postgres_connection") == ()
    extra = source.replace(
        "        conn = psycopg2.connect(**settings)\n",
        "        conn = psycopg2.connect(**settings)\n        conn.autocommit = True\n",
    )
    assert any(
        "conn.autocommit = True" in d for d in helper_differences(extra, "get_postgres_connection") or ()
    )


def test_example_app_helper_is_custom() -> None:
    from pathlib import Path

    source = (Path(__file__).parents[2] / "examples" / "legacy_app" / "legacy_app" / "db.py").read_text(
        encoding="utf-8"
    )
    differences = helper_differences(source, "get_postgres_connection")
    assert differences is not None
    joined = "; ".join(differences)
    assert "connect_timeout=5" in joined
    assert '"shop"' in joined


def test_analyse_legacy_helpers_maps_fqn_to_differences() -> None:
    result = analyse_legacy_helpers(
        {"app/db.py": EQUIVALENT}, {"app/db.py": "app.db"}, (HELPER, "x.y.get_postgres_connection")
    )
    assert result == {HELPER: ()}


def test_discover_finds_helpers_by_behavior_not_by_name() -> None:
    """A def named get_postgres_connection that does not connect is no helper (tests/codemods/
    test_helper_discovery.py covers what is found)."""
    sources = {
        "app/db.py": EQUIVALENT,
        "app/other.py": "class A:\n    def get_postgres_connection(self):\n        pass\n",
        "app/nested.py": "def outer():\n    def get_postgres_connection():\n        pass\n",
        "app/broken.py": "def get_postgres_connection(:\n",
    }
    names = {path: path[:-3].replace("/", ".") for path in sources}
    assert discover_legacy_helpers(sources, names) == ("app.db.get_postgres_connection",)


def test_prefilter_names() -> None:
    assert prefilter_names(("a.b.get_conn", "c.get_conn", "d.get_postgres_connection")) == (
        "get_conn",
        "get_postgres_connection",
    )
    assert prefilter_names(()) == ("get_postgres_connection",)


@pytest.mark.parametrize(
    ("name", "package", "expected"),
    [
        (".db.x", "app", "app.db.x"),
        ("..db.x", "app.api", "app.db.x"),
        ("...x", "app", None),
        ("a.b", None, "a.b"),
    ],
)
def test_absolute_name(name: str, package: str | None, expected: str | None) -> None:
    assert absolute_name(name, package) == expected


def test_references_are_resolved_names_not_text() -> None:
    sources = {
        "app/db.py": EQUIVALENT
        + "\n__all__ = ['get_postgres_connection']\n\ndef again():\n    return get_postgres_connection()\n",
        "app/api/users.py": (
            "from ..db import get_postgres_connection as get_conn\n"
            "from app import db\n"
            "import app.db\n"
            "def f(get_postgres_connection):\n"
            "    return get_postgres_connection()  # a parameter, not the helper\n"
            "def g():\n"
            "    log('get_postgres_connection failed?')\n"
            "    return get_conn(), db.get_postgres_connection, app.db.get_postgres_connection()\n"
        ),
        "app/star.py": "from app.db import *\nconn = get_postgres_connection()\n",
        "tests/test_x.py": "from unittest import mock\nmock.patch('app.db.get_postgres_connection')\n",
        "app/unrelated.py": "x = 1\n",
        "app/broken.py": "get_postgres_connection(\n",
    }
    names = {path: path[:-3].replace("/", ".") for path in sources}
    references = find_legacy_references(sources, names, (HELPER,))
    assert references == (
        "app/api/users.py:1:18: imports app.db.get_postgres_connection",
        "app/api/users.py:8:12: refers to app.db.get_postgres_connection (get_conn)",
        "app/api/users.py:8:24: refers to app.db.get_postgres_connection (db.get_postgres_connection)",
        "app/api/users.py:8:52: refers to app.db.get_postgres_connection (app.db.get_postgres_connection)",
        "app/broken.py:1:1: does not parse; cannot prove it does not use the helper",
        "app/db.py:22:12: refers to app.db.get_postgres_connection (get_postgres_connection)",
        "app/star.py:2:8: uses get_postgres_connection (star import of app.db)",
        "tests/test_x.py:2:12: mentions app.db.get_postgres_connection in a string "
        "('app.db.get_postgres_connection')",
    )


def test_no_helpers_no_references() -> None:
    assert find_legacy_references({"a.py": "get_postgres_connection()"}, {"a.py": "a"}, ()) == ()
