"""PS101: the seed pattern becomes ``with get_pooled_connection()`` only where the rule proves it safe.

The fixtures hold one positive case per supported shape and a near miss for every proof obligation
(transactions, the None guard, the error path, escape, use after close). The last test runs a "before"
and an "after" module against a real PostgreSQL and compares what each leaves in the database.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from codemods.legacy_helpers.equivalence import analyse_legacy_helpers
from codemods.legacy_helpers.escapes import ESCAPES_NOTHING
from codemods.legacy_helpers.raising_helper import NEVER_RETURNS_NONE, RUNS_ONLY_THE_CONNECT
from codemods.rules.base import RuleOptions
from codemods.rules.postgres_compat import PostgresCompatRule
from codemods.rules.postgres_pooled import PostgresPooledRule
from codemods.rules.postgres_pooled.read_only_sql import is_read_only_sql
from tests.codemods.harness import check_fixture, fixture_cases, run_rules

CASES = Path(__file__).parent / "fixtures" / "postgres_pooled"
HELPER = "app.db.get_postgres_connection"
# A helper that keeps the contract and lets nothing escape (what its analysis says of EQUIVALENT_HELPER).
TRUSTED = RuleOptions(legacy_helpers=(HELPER,), legacy_helper_contracts={HELPER: (ESCAPES_NOTHING,)})

EQUIVALENT_HELPER = """
import os

import psycopg2


def get_postgres_connection():
    try:
        return psycopg2.connect(
            host=os.environ.get("POSTGRES_HOST", "localhost"),
            port=os.environ.get("POSTGRES_PORT", "5432"),
            dbname=os.environ.get("POSTGRES_DB", "postgres"),
            user=os.environ.get("POSTGRES_USER", "postgres"),
            password=os.environ.get("POSTGRES_PASSWORD"),
        )
    except Exception:
        return None
"""


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture(case: str) -> None:
    check_fixture(PostgresPooledRule, CASES, case, TRUSTED)


def test_every_reason_code_has_a_near_miss_fixture() -> None:
    covered = {
        site["reason"]
        for path in CASES.glob("*.sites.json")
        for site in json.loads(path.read_text(encoding="utf-8"))
    }
    # helper-may-raise and unknown-helper depend on the helper's definition: tested below.
    # (helper-error-escapes has its fixture, helper_escapes, and tests through the real analysis below.)
    assert set(PostgresPooledRule.REASON_CODES) - {"helper-may-raise", "unknown-helper"} <= covered


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM users",
        "select id, name from users where id = %s",
        "  SELECT COALESCE(SUM(q * p), 0) FROM items WHERE order_id = %s  ;",
        "WITH recent AS (SELECT id FROM orders ORDER BY id DESC LIMIT 5) SELECT count(*) FROM recent",
        "SELECT id FROM users WHERE note = 'please update; delete'  -- insert into x",
        "(SELECT 1)",
        "SELECT current_setting('application_name'), current_database()",
    ],
)
def test_read_only_sql(sql: str) -> None:
    assert is_read_only_sql(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET x = 1",
        "SELECT refresh_totals()",  # a user-defined function may write
        "SELECT nextval('seq')",
        "SELECT pg_advisory_lock(1)",
        "SELECT 1; DELETE FROM t",
        "WITH gone AS (DELETE FROM t RETURNING id) SELECT count(*) FROM gone",
        "SELECT * INTO backup FROM t",
        "SELECT id FROM t FOR UPDATE",
        "select set_config('search_path', 'x', false)",
        "SELECT current_setting('x'), audit_read()",  # a built-in beside a user-defined function
        "VACUUM",
        "",
    ],
)
def test_not_read_only_sql(sql: str) -> None:
    assert not is_read_only_sql(sql)


def _source(name: str) -> str:
    return (CASES / f"{name}.before.py").read_text(encoding="utf-8")


def test_custom_helper_no_longer_blocks_the_pooled_rewrite() -> None:
    """Its own parameters are its pool's business: PS101 passes the helper, PS102 still refuses."""
    source = _source("read_only_select")
    differences = {HELPER: ("it passes connect_timeout=5 (the shim does not)",)}
    options = RuleOptions(
        legacy_helpers=(HELPER,),
        legacy_helper_differences=differences,
        legacy_helper_contracts={HELPER: (ESCAPES_NOTHING,)},
    )
    result = run_rules(source, [PostgresPooledRule], options=options)
    assert [(s.rule, s.status, s.reason) for s in result.sites] == [("PS101", "migrated", None)]
    assert "with get_pooled_connection(get_postgres_connection) as conn:" in (result.output or b"").decode()
    compat = run_rules(source, [PostgresCompatRule], options=options)
    assert [(s.rule, s.status, s.reason) for s in compat.sites] == [("PS102", "reported", "custom-factory")]


HELPER_THAT_RAISES = """
import psycopg2
from dotenv import load_dotenv


def get_postgres_connection():
    load_dotenv()
    return psycopg2.connect(connect_timeout=5)
"""


def test_helper_that_may_raise_blocks_a_seed_with_except_blocks() -> None:
    """Inside the block its exception would reach the seed's handlers; it did not before."""
    contracts = analyse_legacy_helpers(
        {"app/db.py": HELPER_THAT_RAISES}, {"app/db.py": "app.db"}, (HELPER,), contract_only=True
    )
    assert contracts[HELPER]  # it lets connection errors propagate, it runs load_dotenv() first
    options = RuleOptions(legacy_helpers=(HELPER,), legacy_helper_contracts=contracts)
    result = run_rules(_source("read_only_select"), [PostgresPooledRule], options=options)
    assert result.output is None
    assert [(s.status, s.reason) for s in result.sites] == [("reported", "helper-may-raise")]
    # It raises rather than return None, and the seed's `except Exception` would now see that.
    assert "could reach this `except Exception`" in result.sites[0].message


def test_helper_that_may_raise_is_fine_without_except_blocks() -> None:
    source = (
        "from app.db import get_postgres_connection\n\n\n"
        "def count():\n"
        "    conn = get_postgres_connection()\n"
        "    if not conn:\n"
        "        raise RuntimeError('down')\n"
        "    try:\n"
        "        cur = conn.cursor()\n"
        "        cur.execute('SELECT 1')\n"
        "        return cur.fetchone()[0]\n"
        "    finally:\n"
        "        conn.close()\n"
    )
    contracts = {HELPER: ("it lets connection errors propagate (the shim returns None)",)}
    options = RuleOptions(legacy_helpers=(HELPER,), legacy_helper_contracts=contracts)
    result = run_rules(source, [PostgresPooledRule], options=options)
    reasons = [(s.status, s.reason) for s in result.sites]
    assert ("reported", "helper-may-raise") not in reasons


def _contracts(*facts: str) -> RuleOptions:
    return RuleOptions(legacy_helpers=(HELPER,), legacy_helper_contracts={HELPER: ("it raises", *facts)})


def test_raising_helper_handlers_that_would_catch_its_failure_stay_reported() -> None:
    """The near misses of the raising_helper fixture, with a helper that runs nothing but its connect.

    ``except Exception``/``OperationalError`` (or a re-raise shadowing a later handler) would now see the
    helper's connect failure; ``except IntegrityError`` cannot, so only that seed is rewritten.
    """
    pure = _contracts(NEVER_RETURNS_NONE, RUNS_ONLY_THE_CONNECT)
    result = run_rules(_source("raising_helper_near_miss"), [PostgresPooledRule], options=pure)
    assert [(s.line, s.status, s.reason) for s in result.sites] == [
        (7, "reported", "helper-may-raise"),
        (19, "reported", "helper-may-raise"),
        (31, "reported", "helper-may-raise"),
        (45, "migrated", None),
    ]
    assert "could reach this `except psycopg2.OperationalError`" in result.sites[1].message


def test_no_guard_needs_the_never_none_fact() -> None:
    """Without it (a helper that may return None, or one not analysed) the legacy code fails on None."""
    source = _source("raising_helper")
    for options in (_contracts(RUNS_ONLY_THE_CONNECT), TRUSTED):
        result = run_rules(source, [PostgresPooledRule], options=options)
        reasons = [(s.line, s.reason) for s in result.sites if s.status == "reported"]
        # setting()'s guard is no longer dead code, and it has no except returning what the guard does.
        assert reasons == [(line, "none-guard-differs") for line in (7, 17, 32, 44)]


def test_not_seed_pattern_names_what_is_missing_for_this_helper() -> None:
    """A connection never closed: with a helper that never returns None only the ``try``/``finally`` (or
    the straight-line form's ``conn.close()``) is missing, so the note must not ask for a guard."""
    source = (
        "from app.db import get_postgres_connection\n\n\ndef count():\n    conn = get_postgres_connection()\n"
        "    cur = conn.cursor()\n    cur.execute('SELECT 1')\n    return cur.fetchone()\n"
    )
    expected = {
        "never returns None": (
            "the call is not followed by `try: ... finally: conn.close()` (or by statements ending in "
            "`conn.close()` at its level)"
        ),
        "may return None": "the call is not followed by `if not conn: return ...`, then `try: ... finally:",
    }
    for helper, options in (
        ("never returns None", _contracts(NEVER_RETURNS_NONE, RUNS_ONLY_THE_CONNECT)),
        ("may return None", TRUSTED),
    ):
        (site,) = run_rules(source, [PostgresPooledRule], options=options).sites
        assert (site.status, site.reason) == ("reported", "not-seed-pattern"), helper
        assert site.message.startswith(expected[helper]), (helper, site.message)


def _helper(before: str, handler: str) -> str:
    return (
        "import os\n\nimport psycopg2\n\n\ndef get_postgres_connection():\n"
        f"{before}    try:\n        return psycopg2.connect(os.environ['DSN'])\n"
        f"    {handler}:\n        return None\n"
    )


def _seed(*handlers: str) -> str:
    excepts = "".join(f"    {handler}:\n        return None\n" for handler in handlers)
    return (
        "import psycopg2\n\nfrom app.db import get_postgres_connection\n\n\ndef count():\n"
        "    conn = get_postgres_connection()\n    if conn is None:\n        return None\n"
        "    try:\n        cur = conn.cursor()\n        cur.execute('SELECT 1')\n"
        f"        return cur.fetchone()[0]\n{excepts}    finally:\n        conn.close()\n"
    )


CATCH_ALL = _helper("", "except BaseException")
DSN_FIRST = _helper("    dsn = os.environ['DSN']\n", "except BaseException")
OPERATIONAL = _helper("", "except psycopg2.OperationalError")
EXCEPTION = _helper("", "except Exception")
# The example app's shape: a settings function whose int() may raise ValueError, followed by the analysis.
SETTINGS = """\
import logging
import os

import psycopg2

log = logging.getLogger(__name__)

def _settings():
    return {"host": os.environ.get("PGHOST", "localhost"), "port": int(os.environ.get("PGPORT", "5432"))}


def get_postgres_connection():
    settings = _settings()
    try:
        return psycopg2.connect(**settings)
    except psycopg2.Error as error:
        log.error("cannot connect to %s: %s", settings["host"], str(error).strip())
        return None
"""


@pytest.mark.parametrize(
    ("helper", "handlers", "rewritten"),
    [
        # Nothing escapes: any handler may stay.
        (CATCH_ALL, ["except"], True),
        (CATCH_ALL, ["except Exception"], True),
        # KeyboardInterrupt and SystemExit escape `except Exception`: only a bare except would catch them.
        (EXCEPTION, ["except Exception"], True),
        (EXCEPTION, ["except psycopg2.Error"], True),
        (EXCEPTION, ["except BaseException"], False),
        (EXCEPTION, ["except"], False),
        # A KeyError escapes before the try: a handler of KeyError (or a base of it) would now see it.
        (DSN_FIRST, ["except psycopg2.Error"], True),
        (DSN_FIRST, ["except (ValueError, psycopg2.OperationalError)"], True),
        (DSN_FIRST, ["except Exception"], False),
        (DSN_FIRST, ["except KeyError", "except psycopg2.OperationalError"], False),
        (DSN_FIRST, ["except psycopg2.OperationalError", "except LookupError"], False),
        # Anything but OperationalError escapes its try (ProgrammingError for an invalid DSN...).
        (OPERATIONAL, ["except psycopg2.OperationalError"], True),
        (OPERATIONAL, ["except psycopg2.errors.OperationalError"], True),
        (OPERATIONAL, ["except psycopg2.OperationalError", "except psycopg2.ProgrammingError"], False),
        (OPERATIONAL, ["except psycopg2.Error"], False),
        (OPERATIONAL, ["except Exception"], False),
        # A ValueError (a bad port) escapes the followed settings function, anything but Error its try.
        (SETTINGS, ["except psycopg2.Error"], True),
        (SETTINGS, ["except psycopg2.OperationalError"], True),
        (SETTINGS, ["except Exception"], False),
        (SETTINGS, ["except psycopg2.Error", "except ValueError"], False),
    ],
)
def test_seed_handlers_may_not_catch_what_escapes_the_helper(
    helper: str, handlers: list[str], rewritten: bool
) -> None:
    """Through the helper's real analysis: rewritten exactly when no handler catches what escapes it."""
    contracts = analyse_legacy_helpers(
        {"app/db.py": helper}, {"app/db.py": "app.db"}, (HELPER,), contract_only=True
    )
    options = RuleOptions(legacy_helpers=(HELPER,), legacy_helper_contracts=contracts)
    result = run_rules(_seed(*handlers), [PostgresPooledRule], options=options)
    expected = ("migrated", None) if rewritten else ("reported", "helper-error-escapes")
    assert [(s.status, s.reason) for s in result.sites] == [expected], result.sites


def test_unstated_escapes_are_not_taken_for_nothing() -> None:
    """A contract without the escape fact (not the analysis' answer) shows nothing about the handlers."""
    options = RuleOptions(legacy_helpers=(HELPER,), legacy_helper_contracts={HELPER: ()})
    result = run_rules(_source("read_only_select"), [PostgresPooledRule], options=options)
    assert result.output is None
    assert [(s.status, s.reason) for s in result.sites] == [("reported", "helper-error-escapes")]


def test_unknown_helper_is_reported_not_rewritten() -> None:
    options = RuleOptions(legacy_helpers=(HELPER,))
    result = run_rules(_source("read_only_select"), [PostgresPooledRule], options=options)
    assert result.output is None
    assert [(s.status, s.reason) for s in result.sites] == [("reported", "unknown-helper")]


def test_skipped_site_gets_compat_and_rewritten_site_is_not_seen_twice() -> None:
    source = _source("no_handler") + "\n\n" + _source("read_only_select").split('"""', 2)[2]
    options = dataclasses.replace(TRUSTED, legacy_helper_differences={HELPER: ()})
    result = run_rules(source, [PostgresPooledRule, PostgresCompatRule], options=options)
    assert result.error is None
    # (PS102 sees PS101's output, so its line numbers are those of that intermediate text.)
    sites = sorted((s.rule, s.status, s.reason) for s in result.sites)
    assert sites == [
        ("PS101", "migrated", None),
        ("PS101", "reported", "none-guard-differs"),
        ("PS102", "migrated", None),
    ]
    output = (result.output or b"").decode()
    assert "conn = db_utils.get_postgres_connection()" in output
    assert "with get_pooled_connection(get_postgres_connection) as conn:" in output
    assert "from app.db import" in output  # the pooled block still calls the helper


def test_dry_run_reports_migratable_but_still_returns_the_diff() -> None:
    result = run_rules(_source("read_only_select"), [PostgresPooledRule], options=TRUSTED, dry_run=True)
    assert [s.status for s in result.sites] == ["migratable"]
    assert result.output is not None


def test_helper_in_the_same_module_is_analysed() -> None:
    """The helper's own module: its definition is read there, no option needed."""
    body = _source("read_only_select").split("log = logging.getLogger(__name__)", 1)[1]
    source = EQUIVALENT_HELPER + "\nimport logging\nlog = logging.getLogger(__name__)\n" + body
    result = run_rules(
        source, [PostgresPooledRule], path="app/db.py", options=RuleOptions(legacy_helpers=(HELPER,))
    )
    assert [(s.status, s.reason) for s in result.sites] == [("migrated", None)]
    assert "def get_postgres_connection" in (result.output or b"").decode()  # PS901's job, not ours


# --------------------------------------------------------------------- before/after on real PostgreSQL

BEHAVIOR_MODULE = """
import psycopg2

from app.db import get_postgres_connection


def count_rows():
    conn = get_postgres_connection()
    if conn is None:
        return None
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM ps101_items")
        return cur.fetchone()[0]
    except Exception:
        return None
    finally:
        conn.close()


def add_item(name):
    conn = get_postgres_connection()
    if not conn:
        return "down"
    try:
        with conn:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO ps101_items (name) VALUES (%s) RETURNING id", (name,))
                return cur.fetchone()[0]
    except psycopg2.IntegrityError:
        conn.rollback()
        return "duplicate"
    except Exception:
        return "down"
    finally:
        conn.close()


def rename(old, new):
    conn = get_postgres_connection()
    if not conn:
        return "down"
    try:
        cur = conn.cursor()
        cur.execute("UPDATE ps101_items SET name = %s WHERE name = %s", (new, old))
        if cur.rowcount != 1:
            conn.rollback()
            return False
        conn.commit()
        return True
    except Exception:
        return "down"
    finally:
        conn.close()
"""


def _load(name: str, source: str, helper_source: str) -> types.ModuleType:
    """Import ``source`` as a module whose ``app.db`` is ``helper_source``."""
    app = types.ModuleType("app")
    app.__path__ = []
    db = types.ModuleType("app.db")
    exec(compile(helper_source, "app/db.py", "exec"), db.__dict__)
    app.db = db  # type: ignore[attr-defined]
    sys.modules["app"], sys.modules["app.db"] = app, db
    module = types.ModuleType(name)
    exec(compile(source, f"{name}.py", "exec"), module.__dict__)
    return module


@pytest.fixture
def app_modules() -> Iterator[None]:
    """:func:`_load` installs ``app``/``app.db`` in ``sys.modules``: put back what was there, and close the
    pools the loaded modules opened."""
    import db_utils

    saved = {name: sys.modules.get(name) for name in ("app", "app.db")}
    yield
    db_utils.dispose_pools()
    for name, value in saved.items():
        if value is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = value


def _scenario(module: types.ModuleType, postgres: object) -> list[object]:
    query = postgres.query  # type: ignore[attr-defined]
    query("DROP TABLE IF EXISTS ps101_items")
    query("CREATE TABLE ps101_items (id serial PRIMARY KEY, name text UNIQUE)")
    outcome: list[object] = [
        module.count_rows(),
        module.add_item("a") is not None,
        module.add_item("a"),
        module.rename("a", "b"),
        module.rename("missing", "c"),
        module.count_rows(),
        query("SELECT name FROM ps101_items ORDER BY id"),
    ]
    return outcome


@pytest.mark.postgres
def test_rewritten_functions_behave_like_the_legacy_ones(
    postgres: object, clean_env: pytest.MonkeyPatch, app_modules: None
) -> None:
    import db_utils

    if not hasattr(importlib.import_module("db_utils.postgres"), "connect"):
        pytest.skip("get_pooled_connection(helper) needs the runtime of branch pgconnect")
    options = RuleOptions(
        legacy_helpers=(HELPER,),
        legacy_helper_contracts=analyse_legacy_helpers(
            {"app/db.py": EQUIVALENT_HELPER}, {"app/db.py": "app.db"}, (HELPER,), contract_only=True
        ),
    )
    result = run_rules(BEHAVIOR_MODULE, [PostgresPooledRule, PostgresCompatRule], options=options)
    assert result.error is None
    assert [s.status for s in result.sites] == ["migrated"] * 3, result.sites
    after = (result.output or b"").decode()
    assert after.count("with get_pooled_connection(get_postgres_connection) as conn:") == 3

    for name, value in postgres.env().items():  # type: ignore[attr-defined]
        clean_env.setenv(name, value)
    db_utils.dispose_pools()
    legacy = _scenario(_load("legacy_users", BEHAVIOR_MODULE, EQUIVALENT_HELPER), postgres)
    pooled = _scenario(_load("pooled_users", after, EQUIVALENT_HELPER), postgres)
    assert legacy == pooled
    assert legacy[:5] == [0, True, "duplicate", True, False]

    # The database is down: the legacy guard and the pooled except block give the same answers.
    clean_env.setenv("POSTGRES_PORT", "1")
    db_utils.dispose_pools()
    down = [_load(name, source, EQUIVALENT_HELPER) for name, source in (("l", BEHAVIOR_MODULE), ("p", after))]
    answers = [(m.count_rows(), m.add_item("x"), m.rename("a", "b")) for m in down]
    assert answers[0] == answers[1] == (None, "down", "down")


RAISING_HELPER = """
import os

import psycopg2


def get_postgres_connection():
    return psycopg2.connect(
        host=os.environ.get("POSTGRES_HOST", "localhost"),
        port=os.environ.get("POSTGRES_PORT", "5432"),
        dbname=os.environ.get("POSTGRES_DB", "postgres"),
        user=os.environ.get("POSTGRES_USER", "postgres"),
        password=os.environ.get("POSTGRES_PASSWORD"),
    )
"""

RAISING_MODULE = """
import psycopg2

from app.db import get_postgres_connection


def count_rows():
    conn = get_postgres_connection()
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM ps101_items")
        return cur.fetchone()[0]
    finally:
        conn.close()


def add_item(name):
    conn = get_postgres_connection()
    try:
        cur = conn.cursor()
        cur.execute("INSERT INTO ps101_items (name) VALUES (%s) RETURNING id", (name,))
        conn.commit()
    except psycopg2.IntegrityError:
        conn.rollback()
        return "duplicate"
    finally:
        conn.close()
    return True


def rename(old, new):
    conn = get_postgres_connection()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE ps101_items SET name = %s WHERE name = %s", (new, old))
            if cur.rowcount != 1:
                raise LookupError(old)
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.close()
    return True
"""


def _outcome(call: object) -> object:
    try:
        return call()  # type: ignore[operator]
    except Exception as error:
        return type(error).__name__


def _runs_on_a_fresh_table(
    postgres: object,
    clean_env: pytest.MonkeyPatch,
    sources: list[tuple[str, str]],
    scenario: Callable[[types.ModuleType], list[object]],
) -> list[list[object]]:
    """``scenario`` of each module in ``sources`` (importing the raising helper) on the test server, each
    on a fresh ``ps101_items`` table, so the legacy and the rewritten forms start from the same rows."""
    import db_utils

    for name, value in postgres.env().items():  # type: ignore[attr-defined]
        clean_env.setenv(name, value)
    db_utils.dispose_pools()
    runs = []
    for name, source in sources:
        module = _load(name, source, RAISING_HELPER)
        postgres.query("DROP TABLE IF EXISTS ps101_items")  # type: ignore[attr-defined]
        postgres.query("CREATE TABLE ps101_items (id serial PRIMARY KEY, name text UNIQUE)")  # type: ignore[attr-defined]
        runs.append(scenario(module))
    return runs


@pytest.mark.postgres
def test_rewritten_raising_helper_callers_behave_like_the_legacy_ones(
    postgres: object, clean_env: pytest.MonkeyPatch, app_modules: None
) -> None:
    """No guard, a raising helper: same rows, same answers, the same exception when the database is down."""
    import db_utils

    contracts = analyse_legacy_helpers(
        {"app/db.py": RAISING_HELPER}, {"app/db.py": "app.db"}, (HELPER,), contract_only=True
    )
    assert {NEVER_RETURNS_NONE, RUNS_ONLY_THE_CONNECT} <= set(contracts[HELPER])
    options = RuleOptions(legacy_helpers=(HELPER,), legacy_helper_contracts=contracts)
    result = run_rules(RAISING_MODULE, [PostgresPooledRule], options=options)
    assert [s.status for s in result.sites] == ["migrated"] * 3, result.sites
    after = (result.output or b"").decode()
    assert "conn.close()" not in after
    assert "except Exception" not in after  # the trailing re-raise is dropped

    def scenario(module: types.ModuleType) -> list[object]:
        return [
            _outcome(module.count_rows),
            _outcome(lambda: module.add_item("a")),
            _outcome(lambda: module.add_item("a")),
            _outcome(lambda: module.rename("a", "b")),
            _outcome(lambda: module.rename("missing", "c")),
            _outcome(module.count_rows),
            postgres.query("SELECT name FROM ps101_items ORDER BY id"),  # type: ignore[attr-defined]
        ]

    sources = [("legacy_raising", RAISING_MODULE), ("pooled_raising", after)]
    runs = _runs_on_a_fresh_table(postgres, clean_env, sources, scenario)
    assert runs[0] == runs[1]
    assert runs[0][:6] == [0, True, "duplicate", True, "LookupError", 1]

    clean_env.setenv("POSTGRES_PORT", "1")  # the database is down: the helper raises in both forms
    db_utils.dispose_pools()
    down = [
        _load(name, source, RAISING_HELPER)
        for name, source in (("legacy_down", RAISING_MODULE), ("pooled_down", after))
    ]
    answers = [
        [
            _outcome(m.count_rows),
            _outcome(lambda m=m: m.add_item("x")),
            _outcome(lambda m=m: m.rename("a", "b")),
        ]
        for m in down
    ]
    assert answers[0] == answers[1] == ["OperationalError"] * 3


# ------------------------------------------------------------- the straight-line form (no try/finally)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (
            5,
            "line 10: the block can end with uncommitted work after the write at line 7; the legacy code "
            "leaves the connection open there",
        ),
        (17, "line 22: the connection (or a cursor) is used after the block"),
        (27, "line 31: the connection (or a cursor) is used after the block"),
        (35, "line 40: another `conn.close()` besides the one at line 39"),
        (45, "line 50: another `conn.close()` besides the one at line 52"),
        (57, "(or by statements ending in `conn.close()` at its level)"),
        (67, "line 70: `conn` is passed, returned or stored"),
        (77, "line 81: yields while the connection is open"),
        (86, "nothing runs between the call and `conn.close()`"),
    ],
)
def test_straight_line_refusals_say_what_breaks_the_proof(line: int, words: str) -> None:
    never_none = _contracts(NEVER_RETURNS_NONE, RUNS_ONLY_THE_CONNECT)
    result = run_rules(_source("straight_line_near_miss"), [PostgresPooledRule], options=never_none)
    assert result.output is None
    (site,) = [site for site in result.sites if site.line == line]
    assert words in site.message, site.message


def test_straight_line_needs_a_helper_that_never_returns_none() -> None:
    """On None the legacy code fails with AttributeError where the pooled block raises OperationalError;
    a guarded call needs the except that answers like the guard, so the try/finally form."""
    for options in (TRUSTED, RuleOptions(legacy_helpers=(HELPER,)), _contracts(RUNS_ONLY_THE_CONNECT)):
        result = run_rules(_source("straight_line_none_helper"), [PostgresPooledRule], options=options)
        assert result.output is None
        assert [(s.line, s.reason) for s in result.sites] == [
            (5, "none-guard-differs"),
            (14, "not-seed-pattern"),
        ]
        assert "fails with AttributeError" in result.sites[0].message
        assert "with a helper that may return None" in result.sites[1].message


def test_straight_line_rewrite_is_reported_by_its_form() -> None:
    """scan counts rewrites per helper by the message's first word; the form follows."""
    never_none = _contracts(NEVER_RETURNS_NONE, RUNS_ONLY_THE_CONNECT)
    result = run_rules(_source("straight_line"), [PostgresPooledRule], options=never_none)
    assert {site.message for site in result.sites} == {
        f"{HELPER}: conn = ... conn.close() -> with get_pooled_connection(get_postgres_connection) as conn:"
    }


STRAIGHT_MODULE = """
from app.db import get_postgres_connection


def count_rows():
    conn = get_postgres_connection()
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM ps101_items")
    count = cur.fetchone()[0]
    cur.close()
    conn.close()
    return count


def add_item(name):
    conn = get_postgres_connection()
    cur = conn.cursor()
    cur.execute("INSERT INTO ps101_items (name) VALUES (%s) RETURNING id", (name,))
    item_id = cur.fetchone()[0]
    conn.commit()
    cur.close()
    conn.close()
    return item_id is not None


def add_two(first, second):
    conn = get_postgres_connection()
    cur = conn.cursor()
    cur.execute("INSERT INTO ps101_items (name) VALUES (%s)", (first,))
    cur.execute("INSERT INTO ps101_items (name) VALUES (%s)", (second,))
    conn.commit()
    conn.close()
    return True


def rename(old, new):
    conn = get_postgres_connection()
    with conn:
        with conn.cursor() as cur:
            cur.execute("UPDATE ps101_items SET name = %s WHERE name = %s", (new, old))
            if cur.rowcount != 1:
                return False
    conn.close()
    return True


def find(name):
    conn = get_postgres_connection()
    cur = conn.cursor()
    cur.execute("SELECT id FROM ps101_items WHERE name = %s", (name,))
    row = cur.fetchone()
    if row is None:
        return None
    cur.close()
    conn.close()
    return row[0] > 0
"""


@pytest.mark.postgres
def test_rewritten_straight_line_functions_behave_like_the_legacy_ones(
    postgres: object, clean_env: pytest.MonkeyPatch, app_modules: None
) -> None:
    """Same answers, same rows, the same exceptions; a failed write (add_two's duplicate) left the legacy
    transaction open until the connection was collected, the pooled block rolls it back at once: either way
    the first insert is gone."""
    import db_utils

    contracts = analyse_legacy_helpers(
        {"app/db.py": RAISING_HELPER}, {"app/db.py": "app.db"}, (HELPER,), contract_only=True
    )
    options = RuleOptions(legacy_helpers=(HELPER,), legacy_helper_contracts=contracts)
    result = run_rules(STRAIGHT_MODULE, [PostgresPooledRule], options=options)
    assert [s.status for s in result.sites] == ["migrated"] * 5, result.sites
    after = (result.output or b"").decode()
    assert "conn.close()" not in after
    assert after.count("with get_pooled_connection(get_postgres_connection) as conn:") == 5

    def scenario(module: types.ModuleType) -> list[object]:
        return [
            _outcome(module.count_rows),
            _outcome(lambda: module.add_item("a")),
            _outcome(lambda: module.add_item("a")),
            _outcome(lambda: module.add_two("b", "a")),
            _outcome(lambda: module.add_two("b", "d")),
            _outcome(lambda: module.rename("a", "c")),
            _outcome(lambda: module.rename("missing", "x")),
            _outcome(lambda: module.find("c")),
            _outcome(lambda: module.find("zzz")),
            _outcome(module.count_rows),
            postgres.query("SELECT name FROM ps101_items ORDER BY name"),  # type: ignore[attr-defined]
        ]

    sources = [("legacy_straight", STRAIGHT_MODULE), ("pooled_straight", after)]
    runs = _runs_on_a_fresh_table(postgres, clean_env, sources, scenario)
    assert runs[0] == runs[1]
    assert runs[0][:10] == [0, True, "UniqueViolation", "UniqueViolation", True, True, False, True, None, 3]

    clean_env.setenv("POSTGRES_PORT", "1")  # the database is down: the helper raises in both forms
    db_utils.dispose_pools()
    down = [
        _load(name, source, RAISING_HELPER)
        for name, source in (("legacy_straight_down", STRAIGHT_MODULE), ("pooled_straight_down", after))
    ]
    answers = [[_outcome(m.count_rows), _outcome(lambda m=m: m.add_item("x"))] for m in down]
    assert answers[0] == answers[1] == ["OperationalError"] * 2
