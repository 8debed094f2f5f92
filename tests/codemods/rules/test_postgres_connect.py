"""PS100 postgres-connect: fixtures for every import style and reason code, exact site reports, the guide.

The runtime half (``db_utils.postgres.connect``) lives on its own branch and is tested there; these tests
check the rewritten source, which keeps every argument of every call it touches.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemods.rules import all_rules
from codemods.rules.postgres_connect import PostgresConnectRule
from tests.codemods.harness import check_fixture, fixture_cases, run_rules
from tests.codemods.rules.test_sqlite3_connect import (
    assert_exact_sites,
    assert_guide_documents_reason_codes,
)

CASES = Path(__file__).parent / "fixtures" / "postgres_connect"


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture(case: str) -> None:
    check_fixture(PostgresConnectRule, CASES, case)


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture_sites_are_exact(case: str) -> None:
    assert_exact_sites(PostgresConnectRule, CASES, case)


def test_every_case_declares_its_sites_or_is_a_noop() -> None:
    for case in fixture_cases(CASES):
        has_sites = (CASES / f"{case}.sites.json").exists()
        assert has_sites != case.startswith("noop_"), case


def test_every_reason_code_has_a_fixture() -> None:
    covered = {
        row["reason"] for sites in CASES.glob("*.sites.json") for row in json.loads(sites.read_text("utf-8"))
    }
    missing = set(PostgresConnectRule.REASON_CODES) - covered
    assert not missing, missing


def test_guide_documents_every_reason_code() -> None:
    assert_guide_documents_reason_codes(PostgresConnectRule)


def test_rule_is_registered_as_the_first_postgres_phase() -> None:
    rules = list(all_rules())
    assert rules[0] == "PS100"
    assert all_rules()["PS100"] is PostgresConnectRule
    assert PostgresConnectRule.NAME == "postgres-connect"
    assert PostgresConnectRule.SAFETY == "safe"


@pytest.mark.parametrize(
    ("imports", "callee"),
    [
        ("import psycopg2", "psycopg2.connect"),
        ("import psycopg2 as psycopg", "psycopg.connect"),
        ("import psycopg2.extras", "psycopg2.connect"),
        ("from psycopg2 import connect", "connect"),
        ("from psycopg2 import connect as c", "c"),
    ],
)
def test_every_import_style_keeps_every_argument(imports: str, callee: str) -> None:
    arguments = '"dbname=app", connection_factory=F, cursor_factory=C, connect_timeout=5, **extra'
    source = f"{imports}\n\n\ndef f(F, C, extra):\n    return {callee}({arguments})\n"
    result = run_rules(source, [PostgresConnectRule])
    assert result.output is not None
    output = result.output.decode()
    assert f"({arguments})" in output
    assert "db_utils.postgres" in output
    assert [(s.status, s.reason) for s in result.sites] == [("migrated", None)]


def test_dry_run_reports_migratable_and_reported_sites() -> None:
    source = "import psycopg2\n\na = psycopg2.connect(dsn)\nb = psycopg2.connect(dsn, async_=True)\n"
    result = run_rules(source, [PostgresConnectRule], dry_run=True)
    assert sorted((s.line, s.status, s.reason) for s in result.sites) == [
        (3, "migratable", "long-lived-connection"),
        (4, "reported", "async-connection"),
    ]
