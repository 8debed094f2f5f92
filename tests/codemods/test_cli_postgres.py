"""The PostgreSQL migration through the real CLI: PS100 first, PS103 on the whole tree, helpers by behavior.

Each test writes a small project (no git: the file walk is enough) and runs ``python -m codemods`` on it,
so the runner, the project loading and the report are the real ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from codemods.cst.imports.kept import KEPT_COMMENT
from tests.codemods.test_cli import poolshift

RUFF = Path(sys.executable).parent / "ruff"

REPO = Path(__file__).resolve().parents[2]

PHASED = """\
[tool.poolshift]
exclude = ["tests/**"]

[[tool.poolshift.phases]]
name = "api"
paths = ["app/api/**"]

[[tool.poolshift.phases]]
name = "rest"
paths = ["app/**"]
"""

DB = '''\
"""Database access."""

import os

import psycopg2
from dotenv import load_dotenv

load_dotenv(".env.local")


def get_db_connection():
    try:
        return psycopg2.connect(dbname=os.environ.get("POSTGRES_DATABASE", "app"), connect_timeout=5)
    except psycopg2.OperationalError:
        return None
'''

HANDLER = """\
import psycopg2


def handler(dsn):
    conn = psycopg2.connect(dsn)
    try:
        return conn.cursor().execute("SELECT 1")
    finally:
        conn.close()
"""

REPORTING = """\
from psycopg2 import sql
from psycopg2.extras import register_default_jsonb

from app.db import get_db_connection


def report(table):
    conn = get_db_connection()
    register_default_jsonb(conn)
    return sql.Identifier(table).as_string(conn)
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for relpath, text in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def project(tmp_path: Path, pyproject: str = PHASED) -> Path:
    return write(
        tmp_path / "shop",
        {
            "pyproject.toml": pyproject,
            "app/__init__.py": "",
            "app/db.py": DB,
            "app/api/__init__.py": "",
            "app/api/handlers.py": HANDLER,
            "app/reporting.py": REPORTING,
            "tests/test_reporting.py": REPORTING,
        },
    )


def test_phase_one_pools_its_connects_and_wraps_c_api_arguments_in_the_whole_tree(tmp_path: Path) -> None:
    root = project(tmp_path)
    completed = poolshift("migrate", ".", "--phase", "1", "--format", "json", cwd=root)
    assert completed.returncode == 0, completed.stderr.decode()
    assert "db_utils.postgres.connect(dsn)" in (root / "app/api/handlers.py").read_text()
    # Phase 2's own connect waits for phase 2 ...
    assert "psycopg2.connect(dbname=" in (root / "app/db.py").read_text()
    # ... but PS103 is TREE_WIDE: phase 2's as_string/register_* already get the real connection.
    reporting = (root / "app/reporting.py").read_text()
    assert "register_default_jsonb(db_utils.postgres.driver_connection(conn))" in reporting
    assert "as_string(db_utils.postgres.driver_connection(conn))" in reporting
    # Excluded files stay as they are.
    assert (root / "tests/test_reporting.py").read_text() == REPORTING
    sites = json.loads(completed.stdout)["sites"]
    assert sorted((s["rule"], s["path"]) for s in sites if s["status"] == "migrated") == [
        ("PS100", "app/api/handlers.py"),
        ("PS103", "app/reporting.py"),
        ("PS103", "app/reporting.py"),
    ]
    assert {s["phase"] for s in sites if s["rule"] == "PS103"} == {"rest"}
    # Phase 2 then pools the helper's own recipe; PS103 finds nothing left to do.
    again = poolshift("migrate", ".", "--phase", "rest", "--format", "json", cwd=root)
    assert again.returncode == 0, again.stderr.decode()
    db = (root / "app/db.py").read_text()
    assert (
        'db_utils.postgres.connect(dbname=os.environ.get("POSTGRES_DATABASE", "app"), connect_timeout=5)'
        in db
    )
    assert 'load_dotenv(".env.local")' in db
    assert not [s for s in json.loads(again.stdout)["sites"] if s["rule"] == "PS103"]


def test_scan_says_what_it_will_do_with_each_helper(tmp_path: Path) -> None:
    root = project(tmp_path)
    text = poolshift("scan", ".", cwd=root).stdout.decode()
    assert (
        "note: helper app.db.get_db_connection (app/db.py:11): its psycopg2.connect is pooled by PS100; "
        "2 place(s) keep calling it; PS101 can rewrite 0 of them"
    ) in text
    # PS103 ran with phase 1 (TREE_WIDE) but its sites are labelled with their file's own phase.
    assert "By phase: api 1, rest 4" in text
    notes = json.loads(poolshift("scan", ".", "--format", "json", cwd=root).stdout)["notes"]
    assert len(notes) == 1
    assert notes[0].startswith("helper app.db.get_db_connection")


def test_scanning_some_files_speaks_only_of_the_helpers_they_define_or_use(tmp_path: Path) -> None:
    """Round 6: ``scan b.py`` printed a note about a helper only ``a.py`` defines and uses."""
    helper = 'import psycopg2\n\n\ndef get_db_connection():\n    return psycopg2.connect("dbname=x")\n'
    root = write(
        tmp_path / "two",
        {
            "pyproject.toml": "[project]\nname = 'two'\n",  # the root, whichever file is scanned
            "app/__init__.py": "",
            "app/db.py": helper,
            "app/jobs.py": "from app.db import get_db_connection\n\nCONN = get_db_connection()\n",
            "app/cache.py": 'import sqlite3\n\n\ndef open_cache():\n    return sqlite3.connect("c.db")\n',
        },
    )
    assert "note: helper" not in poolshift("scan", "app/cache.py", cwd=root).stdout.decode()
    for scanned in ("app/jobs.py", "app/db.py", "."):
        assert "note: helper app.db.get_db_connection" in poolshift("scan", scanned, cwd=root).stdout.decode()


def test_scan_says_which_calls_of_a_method_helper_it_sees(tmp_path: Path) -> None:
    """pipelinewise-target-postgres's helper is a method: its calls were neither counted nor reported."""
    store = (
        "import psycopg2\n\n\n"
        "class Store:\n"
        "    def open_connection(self):\n"
        "        return psycopg2.connect(self.dsn)\n\n"
        "    def load(self):\n"
        "        conn = self.open_connection()\n"
        "        try:\n"
        "            conn.cursor().execute('SELECT 1')\n"
        "        finally:\n"
        "            conn.close()\n\n"
        "    def query(self):\n"
        "        with self.open_connection() as conn:\n"
        "            return conn.cursor().execute('SELECT 1')\n"
    )
    root = write(tmp_path / "store", {"app/__init__.py": "", "app/db.py": store})
    text = poolshift("scan", ".", cwd=root).stdout.decode()
    assert (
        "note: helper app.db.Store.open_connection (app/db.py:5), a method: its psycopg2.connect is pooled "
        "by PS100; 2 call(s) through self/cls in its class"
    ) in text
    assert "app/db.py:9:16: PS101 [reported: dynamic-callee]" in text
    assert "app/db.py:16:14: PS101 [reported: dynamic-callee]" in text


def assert_own_tests_pass(root: Path) -> None:
    """The migrated tree's own pytest suite, run as the project would run it, passes."""
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{REPO}"}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_an_import_a_test_patches_through_is_kept_and_the_test_still_passes(tmp_path: Path) -> None:
    """teslalarm-kr's test patched ``database.db_manager.psycopg2.connect``; the rewrite had removed the
    module's now unused ``import psycopg2``, so the patch path no longer resolved."""
    db = 'import psycopg2\n\n\ndef get_connection():\n    return psycopg2.connect("dbname=x")\n'
    test = (
        "from app.db import get_connection\n\n\n"
        "def test_get_connection(monkeypatch):\n"
        '    monkeypatch.setattr("app.db.psycopg2.connect", lambda dsn: "fake")\n'
        '    assert get_connection() == "fake"\n'
    )
    other = 'import psycopg2\n\n\ndef open_other():\n    return psycopg2.connect("dbname=y")\n'
    root = write(
        tmp_path / "bot",
        {"app/__init__.py": "", "app/db.py": db, "app/other.py": other, "tests/test_db.py": test},
    )
    assert poolshift("migrate", ".", "--all", cwd=root).returncode == 0
    assert (
        (root / "app/db.py")
        .read_text()
        .startswith(f"import db_utils.postgres\nimport psycopg2  {KEPT_COMMENT}\n")
    )
    # ... and the project's linter neither reports it nor removes it with --fix.
    lint = subprocess.run(
        [str(RUFF), "check", "--isolated", "--select", "F401,RUF100", "--fix", "app"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "import psycopg2" in (root / "app/db.py").read_text()
    assert "import psycopg2" not in (root / "app/other.py").read_text()  # nothing patches through it
    assert_own_tests_pass(root)


def test_an_import_a_test_patches_as_an_object_is_kept_too(tmp_path: Path) -> None:
    """``mock.patch.object(app.db.psycopg2, "connect")`` and ``monkeypatch.setattr(db.psycopg2, ...)``
    spell no string: the path is the patched object's, resolved through the test's imports."""
    db = 'import psycopg2\n\n\ndef get_connection():\n    return psycopg2.connect("dbname=x")\n'
    test = (
        "from unittest import mock\n\n"
        "import app.db\n"
        "from app import jobs\n\n\n"
        "def test_db():\n"
        '    with mock.patch.object(app.db.psycopg2, "connect", return_value="fake"):\n'
        '        assert app.db.get_connection() == "fake"\n\n\n'
        "def test_jobs(monkeypatch):\n"
        '    monkeypatch.setattr(jobs.psycopg2, "connect", lambda dsn: "fake")\n'
        '    assert jobs.get_connection() == "fake"\n'
    )
    root = write(
        tmp_path / "svc",
        {"app/__init__.py": "", "app/db.py": db, "app/jobs.py": db, "tests/test_db.py": test},
    )
    assert poolshift("migrate", ".", "--all", cwd=root).returncode == 0
    for module in ("db", "jobs"):
        assert f"import psycopg2  {KEPT_COMMENT}\n" in (root / f"app/{module}.py").read_text()
    assert_own_tests_pass(root)


def test_scan_with_no_candidate_says_what_it_looked_for(tmp_path: Path) -> None:
    root = write(tmp_path / "empty", {"app/__init__.py": "", "app/x.py": "def f():\n    return 1\n"})
    text = poolshift("scan", ".", cwd=root).stdout.decode()
    assert "note: no candidate found" in text
    for pattern in ("psycopg2.connect", "sqlite3.connect", "urlopen", "functions returning psycopg2.connect"):
        assert pattern in text
    assert "legacy_helpers" in text
    assert "A tree migrated already has none left: `poolshift status` counts" in text  # not "missed"


def test_migrate_without_phase_never_runs_the_cleanup(tmp_path: Path) -> None:
    """One work phase: migrate runs it and stops; the helper and its module's side effects stay."""
    unused_helper = DB.replace("def get_db_connection", "def get_postgres_connection")
    root = write(
        tmp_path / "one",
        {"pyproject.toml": '[tool.poolshift]\nlegacy_helpers = ["app.db.get_postgres_connection"]\n',
         "app/__init__.py": "", "app/db.py": unused_helper},
    )  # fmt: skip
    completed = poolshift("migrate", ".", cwd=root)
    assert completed.returncode == 0, completed.stderr.decode()
    assert b"cleanup phase was not run" in completed.stderr
    db = (root / "app/db.py").read_text()
    assert "def get_postgres_connection" in db
    assert "db_utils.postgres.connect(" in db
    # The explicit cleanup removes the unreferenced helper, keeps the side effect, and says so.
    cleaned = poolshift("migrate", ".", "--phase", "cleanup", cwd=root)
    assert cleaned.returncode == 0, cleaned.stderr.decode()
    db = (root / "app/db.py").read_text()
    assert "def get_postgres_connection" not in db
    assert db.startswith('"""Database access."""')
    assert 'load_dotenv(".env.local")' in db
    assert "kept at module level" in cleaned.stdout.decode()


def test_ps102_runs_only_when_selected_by_id(tmp_path: Path) -> None:
    root = project(tmp_path)
    default = json.loads(poolshift("scan", ".", "--format", "json", cwd=root).stdout)
    assert "PS102" not in default["totals"]["by_rule"]
    family = json.loads(poolshift("scan", ".", "--format", "json", "--select", "PS1", cwd=root).stdout)
    assert "PS102" not in family["totals"]["by_rule"]
    selected = json.loads(poolshift("scan", ".", "--format", "json", "--select", "PS102", cwd=root).stdout)
    assert [(s["reason"], s["path"]) for s in selected["sites"]] == [
        ("custom-factory", "app/db.py"),  # every difference, once, at the helper
        ("custom-factory", "app/reporting.py"),
    ]


def test_trust_legacy_helpers_is_refused_with_the_reason(tmp_path: Path) -> None:
    root = project(
        tmp_path, PHASED.replace("[tool.poolshift]\n", "[tool.poolshift]\ntrust_legacy_helpers = true\n")
    )
    completed = poolshift("scan", ".", cwd=root)
    assert completed.returncode == 2
    assert b"trust_legacy_helpers was removed" in completed.stderr
