"""PS103 psycopg2-c-api: each C function's connection argument is wrapped, literals never, twice never.

The fixtures cover every target (as_string, prepare, quote_ident, register_type, the extras.register_*
family, encrypt_password), every import style they come in, and each reason code the rule records itself.
The method forms (``.as_string(x)``, ``.prepare(x)``) are wrapped only in modules that import psycopg2;
the runner tests below pin down what the whole tree sees: modules without psycopg2 are left byte for byte
(reported as ``receiver-unknown`` when the project uses psycopg2), and files without a candidate are never
parsed with LibCST. That the runner applies the rule with any phase is tested in test_cli_postgres.py.
"""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import pytest

from codemods.first_pass import TargetSet, scan_source
from codemods.project import load_project
from codemods.rules import all_rules
from codemods.rules.base import FirstPassView
from codemods.rules.psycopg2_c_api import (
    CONNECTION_ARGUMENTS,
    TARGETS,
    Psycopg2CApiRule,
    has_method_candidate,
    imports_psycopg2,
)
from codemods.runner import RunResult, phases_for_migrate, run
from tests.codemods.harness import check_fixture, fixture_cases, load_options, run_rules
from tests.codemods.rules.test_sqlite3_connect import assert_guide_documents_reason_codes

CASES = Path(__file__).parent / "fixtures" / "psycopg2_c_api"


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture(case: str) -> None:
    check_fixture(Psycopg2CApiRule, CASES, case)


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture_sites_are_exact(case: str) -> None:
    """Every recorded site is expected and every expected site recorded, with the case's options."""
    options, path = load_options(CASES, case)
    before = (CASES / f"{case}.before.py").read_bytes()
    result = run_rules(before, [Psycopg2CApiRule], path=path, options=options)
    sites_file = CASES / f"{case}.sites.json"
    expected = json.loads(sites_file.read_text("utf-8")) if sites_file.exists() else []
    recorded = sorted((s.line, s.status, s.reason) for s in result.sites)
    assert recorded == sorted((s["line"], s["status"], s["reason"]) for s in expected)


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_the_first_pass_never_skips_a_file_the_rule_has_work_in(case: str) -> None:
    """The ast test plus TARGETS must send every fixture with a site to LibCST (over-inclusive, never
    under): a file they skip is a rewrite or a report silently lost."""
    options, path = load_options(CASES, case)
    before = (CASES / f"{case}.before.py").read_text("utf-8")
    result = run_rules(before, [Psycopg2CApiRule], path=path, options=options)
    facts = scan_source(before, TargetSet(TARGETS))
    view = FirstPassView(ast.parse(before), before, "", lambda name: set())
    # In a run the project flag comes from every file's imports; a fixture is a project of one file.
    project = replace(options, psycopg2_imported=options.psycopg2_imported or imports_psycopg2(facts.imports))
    asks = Psycopg2CApiRule.first_pass_wants(view) and Psycopg2CApiRule.applies_to_project(project)
    wanted = asks or any(c.kind == "resolved" for c in facts.candidates)
    assert wanted or not result.sites, (case, result.sites)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("q.as_string(conn)", True),
        ("a.prepare(conn=c)", True),
        ("a.prepare(**kwargs)", True),  # over-inclusive: LibCST decides
        ("getattr(extras, name)(conn)", True),
        ("q.as_string(None), m.as_string(False), m.as_string(f'{x}'), r.prepare('x'), r.prepare()", False),
        ("q.as_string(db_utils.postgres.driver_connection(conn))", False),
        ("a.prepare(x, y), a.prepare(*args), a.prepare(other=c), prepare(conn)", False),
    ],
)
def test_method_candidate_test(source: str, expected: bool) -> None:
    assert has_method_candidate(ast.parse(source)) is expected


def test_every_reason_code_has_a_fixture() -> None:
    covered = {
        row["reason"] for sites in CASES.glob("*.sites.json") for row in json.loads(sites.read_text("utf-8"))
    }
    # ambiguous-module comes from the runner's first pass (test_first_pass_reports_an_ambiguous_module).
    assert set(Psycopg2CApiRule.REASON_CODES) - {"ambiguous-module"} <= covered


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

    for name, (position, keyword) in CONNECTION_ARGUMENTS.items():
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
    for name, (position, _keyword) in sorted(CONNECTION_ARGUMENTS.items()):
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


# ---------------------------------------------------------------------------------------------------------
# The whole tree, through the runner


UNRELATED = """import logging.handlers


class Handler(logging.handlers.QueueHandler):
    def emit(self, record):
        self.enqueue(self.prepare(record))


def text(message, unixfrom):
    return message.as_string(unixfrom)
"""
PLAIN = "def f(x):\n    return x + {n}\n"


def _tree(root: Path, files: dict[str, str], plain: int = 30) -> dict[str, bytes]:
    for index in range(plain):
        files[f"lib/plain_{index}.py"] = PLAIN.format(n=index)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return {name: (root / name).read_bytes() for name in files}


def _migrate(root: Path) -> RunResult:
    project = load_project([root], select=["PS103"])
    return run(project, phases_for_migrate(project.plan, None), dry_run=False, workers=1, cache=False)


def test_a_tree_without_psycopg2_is_left_alone_and_not_parsed_with_libcst(tmp_path: Path) -> None:
    before = _tree(tmp_path, {"app/handlers.py": UNRELATED, "app/more.py": UNRELATED})
    result = _migrate(tmp_path)
    assert (result.sites, result.errors, result.finals) == ([], [], {})
    assert result.files_parsed == 0
    assert result.files_read == len(before)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


RENDER = """from psycopg2 import sql


def render(conn, table):
    return sql.Identifier(table).as_string(conn)
"""
PASSED_ON = """def describe(query, conn):
    return query.as_string(conn)


def kept(query, conn):
    return query.as_string(conn)  # poolshift: ignore[PS103]
"""


def test_a_project_using_psycopg2_wraps_only_its_psycopg2_modules(tmp_path: Path) -> None:
    before = _tree(
        tmp_path, {"app/db.py": RENDER, "app/describe.py": PASSED_ON, "app/handlers.py": UNRELATED}
    )
    result = _migrate(tmp_path)
    assert result.errors == []
    assert sorted(result.finals) == ["app/db.py"]
    assert "as_string(db_utils.postgres.driver_connection(conn))" in (tmp_path / "app/db.py").read_text()
    for name in ("app/describe.py", "app/handlers.py"):
        assert (tmp_path / name).read_bytes() == before[name]
    assert sorted((s.path, s.line, s.status, s.reason) for s in result.sites) == [
        ("app/db.py", 5, "migrated", None),
        ("app/describe.py", 2, "reported", "receiver-unknown"),
        ("app/describe.py", 6, "suppressed", "receiver-unknown"),
        ("app/handlers.py", 6, "reported", "receiver-unknown"),
        ("app/handlers.py", 10, "reported", "receiver-unknown"),
    ]
    assert result.files_parsed == 3  # the plain files never reach LibCST


def test_first_pass_reports_an_ambiguous_module(tmp_path: Path) -> None:
    """``extras`` handed in as a parameter: it may be psycopg2.extras, which only the first pass sees."""
    source = "import psycopg2\n\n\ndef setup(extras, conn):\n    extras.register_uuid(None, conn)\n"
    _tree(tmp_path, {"app/setup.py": source}, plain=0)
    project = load_project([tmp_path], select=["PS103"])
    result = run(project, project.plan.work_phases, dry_run=True, workers=1, cache=False)
    assert [(s.line, s.status, s.reason) for s in result.sites] == [(5, "reported", "ambiguous-module")]
    assert result.files_parsed == 0


def test_a_file_libcst_does_not_reproduce_is_unchanged_not_an_error() -> None:
    """CPython's webbrowser.py and test/test_posix.py: ``except OSError :`` loses its space in LibCST's
    rendering (LibCST issue 1457); with no rewrite in the file, that is no output and no error."""
    source = "from psycopg2 import sql\ntry:\n    pass\nexcept OSError :\n    pass\n"
    source += "sql.SQL('x').as_string(None)\n"
    result = run_rules(source, [Psycopg2CApiRule])
    assert (result.output, result.error) == (None, None)
    # A rewrite there is still refused: part of the diff would be LibCST's, not the rule's.
    rewritten = run_rules(source.replace("as_string(None)", "as_string(conn)"), [Psycopg2CApiRule])
    assert (rewritten.output, rewritten.error) == (None, "output-does-not-parse")


def test_a_module_naming_the_methods_only_in_text_is_never_parsed(tmp_path: Path) -> None:
    """CPython's pydoc_data/topics.py: "prepare" and "as_string" only inside implicit concatenations deep
    enough to exhaust the recursion limit in LibCST's code generation (an internal error once parsed). It
    holds no call PS103 could have a say in, so the first pass keeps it away from LibCST."""
    pieces = "\n".join(f"    'prepare(conn) and as_string(conn), line {index}\\n'" for index in range(600))
    topics = f"topics = {{'assert': (\n{pieces}\n)}}\n"
    _tree(tmp_path, {"pydoc_data/topics.py": topics, "app/db.py": RENDER}, plain=0)
    result = _migrate(tmp_path)
    assert result.errors == []
    assert [(s.path, s.status) for s in result.sites] == [("app/db.py", "migrated")]
    assert result.files_parsed == 1
