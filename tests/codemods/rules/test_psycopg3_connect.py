"""PS104 psycopg3-connect: every psycopg 3 connect is reported with its reason, none is ever rewritten.

The fixtures hold each form (module, alias, ``from`` import, the connection classes, CockroachDB's, star
import, ``getattr``, a value, a patch, a driver fallback, a suppression) and look-alikes that must stay
silent; the CLI tests run a tree mixing psycopg2 and psycopg 3 through scan, check, status and migrate.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from codemods.first_pass import TargetSet, scan_source
from codemods.rules import all_rules
from codemods.rules.psycopg3_connect import NOT_SUPPORTED, Psycopg3ConnectRule
from tests.codemods.harness import check_fixture, fixture_cases
from tests.codemods.rules.test_sqlite3_connect import assert_exact_sites, assert_guide_documents_reason_codes
from tests.codemods.test_cli import GIT, poolshift

CASES = Path(__file__).parent / "fixtures" / "psycopg3_connect"

MIXED = """\
import psycopg
import psycopg2


def legacy(dsn):
    return psycopg2.connect(dsn)


def modern(dsn):
    return psycopg.connect(dsn)


async def modern_async(dsn):
    return await psycopg.AsyncConnection.connect(dsn)
"""


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture(case: str) -> None:
    check_fixture(Psycopg3ConnectRule, CASES, case)


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture_sites_are_exact(case: str) -> None:
    assert_exact_sites(Psycopg3ConnectRule, CASES, case)


def test_every_case_reports_and_none_rewrites() -> None:
    for case in fixture_cases(CASES):
        assert not (CASES / f"{case}.after.py").exists(), case
        assert (CASES / f"{case}.sites.json").exists() != case.startswith("noop_"), case


def test_guide_documents_every_reason_code() -> None:
    assert_guide_documents_reason_codes(Psycopg3ConnectRule)


def test_rule_is_registered_with_its_contract() -> None:
    rules = all_rules()
    assert rules["PS104"] is Psycopg3ConnectRule
    assert Psycopg3ConnectRule.DEFAULT_ENABLED
    assert not Psycopg3ConnectRule.RUNS_LAST
    assert NOT_SUPPORTED in Psycopg3ConnectRule.REASON_CODES


def test_prefilter_matches_every_file_the_rule_reports() -> None:
    for case in fixture_cases(CASES):
        text = (CASES / f"{case}.before.py").read_text("utf-8")
        if not case.startswith("noop_"):
            assert any(word in text for word in Psycopg3ConnectRule.PREFILTER), case


def test_the_first_pass_finds_each_form_and_no_class_of_another_library() -> None:
    targets = TargetSet(Psycopg3ConnectRule.TARGETS)
    for case in fixture_cases(CASES):
        if case in ("star_import", "dynamic_callee", "callee_as_value"):
            continue  # not resolved calls: the rule's own analysis (or the first pass's kinds) reports them
        facts = scan_source((CASES / f"{case}.before.py").read_text("utf-8"), targets, package="app")
        resolved = [c for c in facts.candidates if c.kind == "resolved"]
        assert bool(resolved) != case.startswith("noop_"), (case, facts.candidates)
        assert not [c for c in facts.candidates if c.kind != "resolved"], (case, facts.candidates)
    # A class named like psycopg's, reached through an object or from a project module, is not a candidate.
    source = "from pkg.models import Connection\nConnection.connect()\nself.Connection.connect()\n"
    assert scan_source(source, targets, package="pkg").candidates == []
    # A module named psycopg that cannot be pinned down is.
    unknown = scan_source("psycopg.connect('')\nself.db.psycopg.AsyncConnection.connect('')\n", targets)
    assert [c.kind for c in unknown.candidates] == ["ambiguous-module", "dynamic-callee"]


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "db.py").write_text(MIXED)
    subprocess.run([*GIT, "init", "-q", str(root)], check=True)
    subprocess.run([*GIT, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(root), "commit", "-qm", "legacy"], check=True)
    return root


def _sites(completed: subprocess.CompletedProcess[bytes]) -> set[tuple[int, str, str, str | None]]:
    return {(s["line"], s["rule"], s["status"], s["reason"]) for s in json.loads(completed.stdout)["sites"]}


def test_scan_check_status_and_migrate_account_for_psycopg3(mixed: Path) -> None:
    reported = {(10, "PS104", "reported", NOT_SUPPORTED), (14, "PS104", "reported", NOT_SUPPORTED)}
    for cached in ((), ("--no-cache",)):  # the read-only verdicts from the cache and computed afresh
        scan = poolshift("scan", ".", "--format", "json", *cached, cwd=mixed)
        assert scan.returncode == 0, scan.stderr.decode()
        assert _sites(scan) == {(6, "PS100", "migratable", None), *reported}
    check = poolshift("check", ".", "--format", "json", cwd=mixed)
    assert check.returncode == 1  # the psycopg2 call; the psycopg 3 ones are reported, they do not fail it
    assert reported <= _sites(check)
    migrate = poolshift("migrate", ".", "--all", "--format", "json", cwd=mixed)
    assert migrate.returncode == 0, migrate.stderr.decode()
    assert _sites(migrate) == {(6, "PS100", "migrated", None), *reported}
    text = (mixed / "app" / "db.py").read_text()
    assert "return db_utils.postgres.connect(dsn)" in text
    assert "return psycopg.connect(dsn)" in text
    assert "await psycopg.AsyncConnection.connect(dsn)" in text
    assert poolshift("check", ".", cwd=mixed).returncode == 0
    status = poolshift("status", ".", "--format", "json", cwd=mixed)
    total = json.loads(status.stdout)["total"]
    assert (total["migrated"], total["remaining"], total["reported"]) == (1, 0, 2)


def test_explain_prints_what_to_do_instead(tmp_path: Path) -> None:
    text = poolshift("explain", NOT_SUPPORTED, cwd=tmp_path).stdout.decode()
    assert text.startswith(f"# {NOT_SUPPORTED} (PS104, psycopg3-connect)\n\n### {NOT_SUPPORTED}\n")
    assert "ConnectionPool" in text
    assert "pool.connection()" in text


def test_an_ambiguous_module_gets_psycopg3_advice_not_a_promise_to_migrate(tmp_path: Path) -> None:
    """PS104 rewrites nothing, so "import it by name to migrate" (the other rules' advice) would mislead."""
    from codemods.project import load_project
    from codemods.runner import run

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "db.py").write_text("def load(psycopg, dsn):\n    return psycopg.connect(dsn)\n")
    project = load_project([tmp_path], select=["PS104"])
    result = run(project, project.plan.work_phases, dry_run=True, workers=1, cache=False)
    (site,) = result.sites
    assert (site.rule, site.line, site.status, site.reason) == ("PS104", 2, "reported", "ambiguous-module")
    assert "to migrate" not in site.message
    assert "psycopg_pool" in site.message
    assert "import psycopg2 by name so PS100 migrates it" in site.message
