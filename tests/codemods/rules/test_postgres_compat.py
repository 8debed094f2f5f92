"""PS102: every remaining helper call is routed to ``db_utils.get_postgres_connection()``, keeping its shape.

Only where the helper is shown equivalent to the shim (or the user trusts it); the fixtures cover every
import form, the helper's own module, custom helpers and the reported shapes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemods.rules.base import RuleOptions
from codemods.rules.postgres_compat import PostgresCompatRule
from tests.codemods.harness import check_fixture, fixture_cases, run_rules

CASES = Path(__file__).parent / "fixtures" / "postgres_compat"
HELPER = "app.db.get_postgres_connection"
TRUSTED = RuleOptions(legacy_helpers=(HELPER,), legacy_helper_differences={HELPER: ()})


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture(case: str) -> None:
    check_fixture(PostgresCompatRule, CASES, case, TRUSTED)


def test_every_reason_code_has_a_fixture() -> None:
    covered = {
        site["reason"]
        for path in CASES.glob("*.sites.json")
        for site in json.loads(path.read_text(encoding="utf-8"))
    }
    assert set(PostgresCompatRule.REASON_CODES) <= covered


def test_custom_factory_message_says_what_differs() -> None:
    source = (CASES / "custom_factory.before.py").read_text(encoding="utf-8")
    result = run_rules(
        source, [PostgresCompatRule], path="app/db.py", options=RuleOptions(legacy_helpers=(HELPER,))
    )
    definition, call = sorted(result.sites, key=lambda s: s.line)
    assert (definition.reason, call.reason) == ("custom-factory", "custom-factory")
    assert "listed at its definition" in call.message  # one list per helper, not one per call
    site = definition
    for expected in (
        "conn.autocommit = True",
        "host is read from DB_HOST",
        "port is `5432`",
        'dbname defaults to "shop"',
        "cursor_factory=RealDictCursor",
        "connect_timeout=5",
        "it does not pass password (the shim reads POSTGRES_PASSWORD)",
    ):
        assert expected in site.message, (expected, site.message)


def test_no_configured_helper_means_no_work() -> None:
    source = (CASES / "from_import.before.py").read_text(encoding="utf-8")
    result = run_rules(source, [PostgresCompatRule], options=RuleOptions())
    assert result.output is None
    assert result.sites == []


def test_import_stays_while_something_else_still_uses_it() -> None:
    source = (
        "from app.db import get_postgres_connection\n\n"
        "def a():\n    return get_postgres_connection()\n\n"
        "def b():\n    return get_postgres_connection('replica')\n"
    )
    result = run_rules(source, [PostgresCompatRule], options=TRUSTED)
    output = (result.output or b"").decode()
    assert output.startswith("import db_utils\nfrom app.db import get_postgres_connection\n")
    assert "return db_utils.get_postgres_connection()" in output
    assert [(s.status, s.reason) for s in result.sites] == [
        ("migrated", None),
        ("reported", "unsupported-argument"),
    ]


def test_function_level_import_is_pruned_and_block_stays_valid() -> None:
    source = (
        "def a():\n    from app.db import get_postgres_connection\n    return get_postgres_connection()\n"
    )
    result = run_rules(source, [PostgresCompatRule], options=TRUSTED)
    assert (result.output or b"").decode() == (
        "import db_utils\n\ndef a():\n    return db_utils.get_postgres_connection()\n"
    )


def test_helper_found_on_disk_next_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the runner's analysis the rule reads the helper's module relative to the file."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "db.py").write_text(
        "import psycopg2\n\ndef get_postgres_connection():\n    return psycopg2.connect(sslmode='require')\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    source = "from app.db import get_postgres_connection\nconn = get_postgres_connection()\n"
    result = run_rules(source, [PostgresCompatRule], options=RuleOptions(legacy_helpers=(HELPER,)))
    (site,) = result.sites
    assert (site.status, site.reason) == ("reported", "custom-factory")
    assert "listed at its definition" in site.message
    # The definition itself carries every difference, once, when PS102 visits the helper's module.
    definition = run_rules(
        (tmp_path / "app" / "db.py").read_text("utf-8"), [PostgresCompatRule], path="app/db.py",
        options=RuleOptions(legacy_helpers=(HELPER,)),
    )  # fmt: skip
    (site,) = definition.sites
    assert (site.line, site.reason) == (3, "custom-factory")
    assert "sslmode='require'" in site.message
    assert "connection errors propagate" in site.message


def test_is_opt_in() -> None:
    assert PostgresCompatRule.DEFAULT_ENABLED is False
