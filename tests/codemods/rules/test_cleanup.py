"""PS901: the helper goes only when nothing refers to it; otherwise every reference is listed."""

from __future__ import annotations

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
