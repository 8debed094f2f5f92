"""PS201 sqlite3-connect: fixtures, exact site reports, reason-code docs, and migrated code run for real.

Fixture cases live in ``fixtures/sqlite3_connect``; every case has an exact ``.sites.json`` (or is a
``noop_*`` case that must record nothing), so a rule that starts reporting, or silently skipping, a site
fails here even when the output text is unchanged.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from codemods.rules import all_rules
from codemods.rules.base import PoolshiftRule
from codemods.rules.sqlite3_connect import Sqlite3ConnectRule
from tests.codemods.harness import check_fixture, fixture_cases, run_rules

CASES = Path(__file__).parent / "fixtures" / "sqlite3_connect"
REPO = Path(__file__).resolve().parents[3]
GUIDE = REPO / "migration_guide" / "rules"


def assert_exact_sites(rule: type[PoolshiftRule], case_dir: Path, case: str) -> None:
    """Every recorded site is expected and every expected site recorded (check_fixture checks only ⊇)."""
    result = run_rules((case_dir / f"{case}.before.py").read_bytes(), [rule])
    sites_file = case_dir / f"{case}.sites.json"
    expected = json.loads(sites_file.read_text("utf-8")) if sites_file.exists() else []
    recorded = sorted((s.line, s.status, s.reason) for s in result.sites)
    assert recorded == sorted((s["line"], s["status"], s["reason"]) for s in expected)
    assert all(site.rule == rule.RULE_ID and site.path == "app/module.py" for site in result.sites)


def assert_guide_documents_reason_codes(rule: type[PoolshiftRule]) -> None:
    headings = set(re.findall(r"^### (\S+)$", (GUIDE / f"{rule.RULE_ID}.md").read_text("utf-8"), re.M))
    assert set(rule.REASON_CODES) <= headings, set(rule.REASON_CODES) - headings


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture(case: str) -> None:
    check_fixture(Sqlite3ConnectRule, CASES, case)


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture_sites_are_exact(case: str) -> None:
    assert_exact_sites(Sqlite3ConnectRule, CASES, case)


def test_every_case_declares_its_sites_or_is_a_noop() -> None:
    for case in fixture_cases(CASES):
        has_sites = (CASES / f"{case}.sites.json").exists()
        assert has_sites != case.startswith("noop_"), case
        if case.startswith("noop_"):
            assert not (CASES / f"{case}.after.py").exists(), case


def test_guide_documents_every_reason_code() -> None:
    """tests/codemods/test_guide.py runs this page's examples; here: each code has its own heading."""
    assert_guide_documents_reason_codes(Sqlite3ConnectRule)


def test_rule_is_registered_with_its_contract() -> None:
    assert all_rules()["PS201"] is Sqlite3ConnectRule
    assert Sqlite3ConnectRule.NAME == "sqlite3-connect"
    assert Sqlite3ConnectRule.SAFETY == "guarded"
    assert not Sqlite3ConnectRule.RUNS_LAST
    assert {"memory-database", "custom-factory", "conn-stored"} <= set(Sqlite3ConnectRule.REASON_CODES)


def test_prefilter_matches_every_file_the_rule_changes_or_reports() -> None:
    """The runner skips files without a PREFILTER string, so every non-noop case must contain one."""
    for case in fixture_cases(CASES):
        text = (CASES / f"{case}.before.py").read_text("utf-8")
        if not case.startswith("noop_"):
            assert any(word in text for word in Sqlite3ConnectRule.PREFILTER), case


def test_dry_run_reports_migratable_and_leaves_reported_sites() -> None:
    source = 'import sqlite3\n\na = sqlite3.connect(path)\nb = sqlite3.connect(":memory:")\n'
    result = run_rules(source, [Sqlite3ConnectRule], dry_run=True)
    assert sorted((s.line, s.status, s.reason) for s in result.sites) == [
        (3, "migratable", "conn-stored"),
        (4, "reported", "memory-database"),
    ]


def test_other_rules_output_is_left_alone_on_second_run() -> None:
    """The migrated spelling never resolves to sqlite3.connect, whatever import style produced it."""
    migrated = (CASES / "from_import_other_names.after.py").read_text("utf-8")
    assert run_rules(migrated, [Sqlite3ConnectRule]).sites == []


PROGRAM = """
import sys
{imports}

path = sys.argv[1]
with {call}(path) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
conn = {call}(path, timeout=2.0, isolation_level=None)
print(conn.execute("SELECT sum(x), count(*) FROM t").fetchone(), conn.in_transaction, conn.isolation_level)
conn.close()
scratch = {call}(":memory:")
print(scratch.execute("SELECT count(*) FROM sqlite_master").fetchone())
"""


@pytest.mark.parametrize(
    ("imports", "call"),
    [
        ("import sqlite3", "sqlite3.connect"),
        ("import sqlite3 as lite", "lite.connect"),
        ("from sqlite3 import connect", "connect"),
        ("from sqlite3 import connect as open_db", "open_db"),
    ],
)
def test_migrated_program_behaves_like_the_original(tmp_path: Path, imports: str, call: str) -> None:
    """Run the original and the migrated program on real SQLite files through the real shim."""
    original = PROGRAM.format(imports=imports, call=call)
    result = run_rules(original, [Sqlite3ConnectRule])
    assert result.output is not None
    migrated = result.output.decode()
    assert "db_utils.sqlite" in migrated
    outputs = []
    for name, source in (("original", original), ("migrated", migrated)):
        script = tmp_path / f"{name}.py"
        script.write_text(source, encoding="utf-8")
        completed = subprocess.run(
            [sys.executable, str(script), str(tmp_path / f"{name}.db")],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            timeout=60,
        )
        assert completed.returncode == 0, completed.stderr
        outputs.append(completed.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith("(6, 3) False None")


def test_relative_imports_do_not_break_the_rewrite_without_a_package_name() -> None:
    """Runner may not know the package; rewrites must not need it, and `.db.connect` is not sqlite3's."""
    source = (
        "from . import helpers\n"
        "from .db import connect as local_connect\n"
        "from sqlite3 import connect\n"
        "import sqlite3\n\n\n"
        "def f(p):\n"
        '    return connect(p), connect(":memory:"), sqlite3.connect(p), local_connect(p), helpers.x\n'
    )
    result = run_rules(source, [Sqlite3ConnectRule], module_name=None)
    assert result.error is None
    assert result.output is not None
    assert result.output.decode() == (
        "import db_utils.sqlite\n\n"
        "from . import helpers\n"
        "from .db import connect as local_connect\n"
        "from sqlite3 import connect\n\n\n"
        "def f(p):\n"
        '    return db_utils.sqlite.connect(p), connect(":memory:"), db_utils.sqlite.connect(p), '
        "local_connect(p), helpers.x\n"
    )
    assert sorted((s.column, s.status, s.reason) for s in result.sites) == [
        (12, "migrated", None),
        (24, "reported", "memory-database"),
        (45, "migrated", None),
    ]


def test_every_migrated_site_says_wal_changes_the_file() -> None:
    """Issue 13: the switch to WAL is persistent, so the report says so on each migrated site."""
    source = (
        "import sqlite3\n"
        "from sqlite3 import connect\n\n"
        "STORE = sqlite3.connect('app.db')\n\n"
        "def f(path):\n"
        "    return connect(path), sqlite3.connect(':memory:')\n"
    )
    result = run_rules(source, [Sqlite3ConnectRule])
    migrated = [site for site in result.sites if site.status == "migrated"]
    assert len(migrated) == 2
    assert all("WAL" in site.message and "SQLITE_POOL_WAL=false" in site.message for site in migrated)
    assert "close it when done" in next(s.message for s in migrated if s.reason == "conn-stored")
    (reported,) = [site for site in result.sites if site.status == "reported"]
    assert reported.reason == "memory-database"
    assert "WAL" not in reported.message
