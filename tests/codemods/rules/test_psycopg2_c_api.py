"""PS103 psycopg2-c-api: each C function's connection argument is wrapped, literals never, twice never.

The fixtures cover every target (as_string, prepare, quote_ident, register_type, the extras.register_*
family, encrypt_password), every import style they come in, and each reason code. That the runner applies
the rule to the whole tree with any phase is tested in tests/codemods/test_runner_postgres.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemods.rules import all_rules
from codemods.rules.psycopg2_c_api import TARGETS, Psycopg2CApiRule
from tests.codemods.harness import check_fixture, fixture_cases, run_rules
from tests.codemods.rules.test_sqlite3_connect import (
    assert_exact_sites,
    assert_guide_documents_reason_codes,
)

CASES = Path(__file__).parent / "fixtures" / "psycopg2_c_api"


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture(case: str) -> None:
    check_fixture(Psycopg2CApiRule, CASES, case)


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture_sites_are_exact(case: str) -> None:
    assert_exact_sites(Psycopg2CApiRule, CASES, case)


def test_every_reason_code_has_a_fixture() -> None:
    covered = {
        row["reason"] for sites in CASES.glob("*.sites.json") for row in json.loads(sites.read_text("utf-8"))
    }
    assert set(Psycopg2CApiRule.REASON_CODES) <= covered


def test_guide_documents_every_reason_code() -> None:
    assert_guide_documents_reason_codes(Psycopg2CApiRule)


def test_rule_contract() -> None:
    assert all_rules()["PS103"] is Psycopg2CApiRule
    assert Psycopg2CApiRule.TREE_WIDE
    assert Psycopg2CApiRule.SAFETY == "safe"


def test_argument_positions_match_the_installed_psycopg2() -> None:
    """Python targets: by signature. C targets: passing a non-connection there, by position and by
    keyword, must fail psycopg2's type check (not an argument-binding error)."""
    import importlib
    import inspect

    for name, (position, keyword) in TARGETS.items():
        module_name, _, function_name = name.rpartition(".")
        function = getattr(importlib.import_module(module_name), function_name)
        try:
            parameters = list(inspect.signature(function).parameters)
        except ValueError:
            _check_c_function(function, position, keyword)
            continue
        assert parameters[position] == keyword, (name, parameters)


def _check_c_function(function: object, position: int, keyword: str | None) -> None:
    import psycopg2.extensions

    before = ["x", "user", None][:position] if position != 1 else [_caster_or_text(function)]
    calls = [lambda: function(*before, object())]  # type: ignore[operator]
    if keyword is not None:
        calls.append(lambda: function(*before, **{keyword: object()}))  # type: ignore[operator]
    for call in calls:
        with pytest.raises(TypeError, match=r"connection|cursor"):
            call()
    assert psycopg2.extensions  # imported for the caster


def _caster_or_text(function: object) -> object:
    import psycopg2.extensions

    if getattr(function, "__name__", "") == "register_type":
        return psycopg2.extensions.new_type((25,), "T", lambda value, cursor: value)
    return "name"


def test_every_target_is_wrapped() -> None:
    lines = ["import psycopg2._json, psycopg2._psycopg, psycopg2._range, psycopg2._ipaddress"]
    lines += ["import psycopg2.extensions, psycopg2.extras", "", "", "def f(conn):"]
    for name, (position, _keyword) in sorted(TARGETS.items()):
        arguments = ", ".join(["x"] * position + ["conn"])
        lines.append(f"    {name}({arguments})")
    result = run_rules("\n".join(lines) + "\n", [Psycopg2CApiRule])
    assert result.output is not None
    assert len(result.sites) == len(TARGETS)
    assert result.output.decode().count("db_utils.postgres.driver_connection(conn)") == len(TARGETS)


PROGRAM = """
import sys
import psycopg2 as psycopg
from psycopg2 import sql
from psycopg2.extensions import quote_ident
from psycopg2.extras import register_default_jsonb


def connect(**kwargs):
    return psycopg.connect(sys.argv[1], application_name="ps103", **kwargs)


def describe(conn, table):
    register_default_jsonb(conn)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT %s::jsonb, {}").format(sql.Literal(table)).as_string(conn), ['{"a": 1}'])
        row = cur.fetchone()
    return row, quote_ident(table, conn), sql.Identifier(table).as_string(conn)


conn = connect(connect_timeout=5)
try:
    print(describe(conn, "order items"), type(conn).__module__.split(".")[0])
finally:
    conn.close()
"""


@pytest.mark.postgres
def test_migrated_program_behaves_like_the_original(postgres: object, tmp_path: Path) -> None:
    """PS100 then PS103 on a real program, run against a real server: same output, pooled connection."""
    import subprocess
    import sys

    from codemods.rules.postgres_connect import PostgresConnectRule

    migrated = run_rules(PROGRAM, [PostgresConnectRule, Psycopg2CApiRule]).output
    assert migrated is not None
    assert "db_utils.postgres.connect(" in migrated.decode()
    outputs = []
    for name, source in (("original", PROGRAM), ("migrated", migrated.decode())):
        script = tmp_path / f"{name}.py"
        script.write_text(source, encoding="utf-8")
        completed = subprocess.run(
            [sys.executable, str(script), postgres.dsn],  # type: ignore[attr-defined]
            capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[3], timeout=120,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr
        outputs.append(completed.stdout.rsplit(" ", 1))
    (original, original_kind), (after, after_kind) = outputs
    assert original == after
    assert "({'a': 1}, 'order items')" in original
    assert (original_kind.strip(), after_kind.strip()) == ("psycopg2", "db_utils")
