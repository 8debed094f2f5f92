"""PS901: the helper goes only when nothing refers to it; otherwise every reference is listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemods.legacy_helpers.equivalence import analyse_legacy_helpers
from codemods.legacy_helpers.references import find_legacy_references
from codemods.rules.base import RuleOptions
from codemods.rules.cleanup import LegacyHelperCleanupRule
from codemods.rules.postgres_compat import PostgresCompatRule
from tests.codemods.harness import check_fixture, fixture_cases, run_rules

CASES = Path(__file__).parent / "fixtures" / "cleanup"
HELPER = "app.db.get_postgres_connection"
OPTIONS = RuleOptions(legacy_helpers=(HELPER,))


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture(case: str) -> None:
    check_fixture(LegacyHelperCleanupRule, CASES, case, OPTIONS)


def test_runs_last() -> None:
    assert LegacyHelperCleanupRule.RUNS_LAST


def test_every_remaining_reference_is_reported_once() -> None:
    references = ("a.py:1:1: imports app.db.get_postgres_connection", "b.py:9:5: refers to x")
    source = (CASES / "still_referenced.before.py").read_text(encoding="utf-8")
    options = RuleOptions(legacy_helpers=(HELPER,), remaining_legacy_references=references)
    result = run_rules(source, [LegacyHelperCleanupRule], path="app/db.py", options=options)
    assert result.output is None
    assert [(s.status, s.reason, s.message) for s in result.sites] == [
        ("reported", "helper-still-referenced", reference) for reference in references
    ]


def test_whole_tree_after_compat_then_cleanup() -> None:
    """Compat rewrites the callers; then no reference remains and the cleanup may delete the helper."""
    helper_module = (
        "import os\n\nimport psycopg2\n\n\n"
        "def get_postgres_connection():\n"
        "    try:\n"
        "        return psycopg2.connect(\n"
        "            host=os.environ.get('POSTGRES_HOST', 'localhost'),\n"
        "            port=os.environ.get('POSTGRES_PORT', '5432'),\n"
        "            dbname=os.environ.get('POSTGRES_DB', 'postgres'),\n"
        "            user=os.environ.get('POSTGRES_USER', 'postgres'),\n"
        "            password=os.environ.get('POSTGRES_PASSWORD'),\n"
        "        )\n"
        "    except psycopg2.Error:\n"
        "        return None\n\n\n"
        "def ping():\n    conn = get_postgres_connection()\n    return conn is not None\n"
    )
    caller = "from app.db import get_postgres_connection\n\nconn = get_postgres_connection()\n"
    tree = {"app/db.py": helper_module, "app/users.py": caller}
    names = {"app/db.py": "app.db", "app/users.py": "app.users"}
    assert len(find_legacy_references(tree, names, (HELPER,))) == 3

    # What the runner does: analyse the helper once, hand the verdict to every file's rules.
    analysis = analyse_legacy_helpers(tree, names, (HELPER,))
    assert analysis == {HELPER: ()}
    compat_options = RuleOptions(legacy_helpers=(HELPER,), legacy_helper_differences=analysis)
    migrated = {}
    for path, text in tree.items():
        result = run_rules(text, [PostgresCompatRule], path=path, options=compat_options)
        assert [s.status for s in result.sites] == ["migrated"]
        migrated[path] = (result.output or b"").decode()
    remaining = find_legacy_references(migrated, names, (HELPER,))
    assert remaining == ()

    options = RuleOptions(legacy_helpers=(HELPER,), remaining_legacy_references=remaining)
    final = run_rules(migrated["app/db.py"], [LegacyHelperCleanupRule], path="app/db.py", options=options)
    output = (final.output or b"").decode()
    assert "get_postgres_connection()" in output  # ping() now calls the shim's function
    assert "def get_postgres_connection" not in output
    assert "import psycopg2" not in output
    assert "import os" not in output
    assert "import db_utils" in output


def test_cleanup_lists_the_module_level_statements_it_kept() -> None:
    source = (CASES / "keeps_side_effects.before.py").read_text(encoding="utf-8")
    result = run_rules(source, [LegacyHelperCleanupRule], path="app/db.py", options=OPTIONS)
    (site,) = result.sites
    assert '`load_dotenv(".env.local")`' in site.message
    assert "do more than connect" in site.message


def test_a_helper_found_only_by_behavior_is_never_removed() -> None:
    """Unreferenced in the tree may mean public API: only named (or classically named) helpers go."""
    source = (CASES / "keeps_side_effects.before.py").read_text(encoding="utf-8")
    options = RuleOptions(legacy_helpers=(HELPER,), removable_helpers=())
    result = run_rules(source, [LegacyHelperCleanupRule], path="app/db.py", options=options)
    assert result.output is None
    assert result.sites == []


KEPT_HELPER = """\
\"\"\"Database access.\"\"\"

import os

import psycopg2


def get_postgres_connection():  # poolshift: ignore[PS901] -- scripts outside this repository import it
    return psycopg2.connect(host=os.environ.get("POSTGRES_HOST", "localhost"))


# poolshift: ignore[PS901]
def get_report_connection():
    return psycopg2.connect(host=os.environ.get("POSTGRES_HOST", "localhost"))


def get_batch_connection():
    return psycopg2.connect(host=os.environ.get("POSTGRES_HOST", "localhost"))


LIMIT = 3  # poolshift: ignore[PS901]
"""
PYPROJECT = (
    '[tool.poolshift]\nlegacy_helpers = ["app.db.get_report_connection", "app.db.get_batch_connection"]\n'
)


def test_cli_cleanup_keeps_a_suppressed_helper_and_reports_an_unused_suppression(tmp_path: Path) -> None:
    """Through the real CLI: the two suppressed helpers stay (one still called), the third goes."""
    from tests.codemods.test_cli import make_tree, poolshift

    caller = "from app.db import get_report_connection\n\n\ndef rows():\n    return get_report_connection()\n"
    files = {"pyproject.toml": PYPROJECT, "app/db.py": KEPT_HELPER, "app/use.py": caller}
    root = make_tree(tmp_path / "shop", {path: text.encode() for path, text in files.items()})
    scan = poolshift("check", "app/db.py", "--phase", "cleanup", "--format", "json", cwd=root)
    sites = {(s["line"], s["rule"]): s for s in json.loads(scan.stdout)["sites"]}
    assert (sites[(8, "PS901")]["status"], sites[(8, "PS901")]["reason"]) == ("suppressed", None)
    # Still called from app/use.py, but kept on purpose: suppressed, not "helper-still-referenced".
    assert sites[(13, "PS901")]["status"] == "suppressed"
    # Not suppressed: blocked, like any helper, while a helper is still referenced.
    assert (sites[(17, "PS901")]["status"], sites[(17, "PS901")]["reason"]) == (
        "reported",
        "helper-still-referenced",
    )
    # The named code is judged only where PS901 runs; the phase's other rules leave it alone.
    assert [line for line, rule in sites if rule == "PS000"] == [21]
    unused = sites[(21, "PS000")]
    assert (unused["status"], unused["reason"]) == ("reported", "unused-suppression")
    assert scan.returncode == 1  # the unused suppression fails check

    (root / "app/db.py").write_text(KEPT_HELPER.replace("LIMIT = 3  # poolshift: ignore[PS901]", "LIMIT = 3"))
    (root / "app/use.py").write_text("def rows():\n    return []\n")
    migrate = poolshift("migrate", ".", "--phase", "cleanup", "--format", "json", cwd=root)
    assert migrate.returncode == 0, migrate.stderr.decode()
    after = (root / "app/db.py").read_text()
    assert "def get_postgres_connection():  # poolshift: ignore[PS901]" in after
    assert "def get_report_connection():" in after
    assert "def get_batch_connection" not in after
    assert "import psycopg2\n" in after  # the kept helpers still use it
    statuses = {(s["line"], s["status"]) for s in json.loads(migrate.stdout)["sites"]}
    assert statuses == {(8, "suppressed"), (13, "suppressed"), (17, "migrated")}
    check = poolshift("check", "app/db.py", "--select", "PS901", cwd=root)
    assert check.returncode == 0, check.stdout.decode()  # suppressed sites do not fail check
    assert b"2 suppressed" in check.stdout
