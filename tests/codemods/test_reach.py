"""Reach: every call whose callee could be one of the rules' targets is in the report.

The fixture tree (``fixtures/reach``) holds the shapes a real project uses: a module name imported from
the project's own module (with the ``pysqlite3``/``sqlite3`` choice there), a package attribute, a
relative import, a module passed around as an attribute, ``getattr`` lookups, a name the project builds
at run time and one never imported. The report is compared with a grep of the call names: every grep
hit that is a call is a site.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

from codemods.first_pass import TargetSet, project_module_aliases, scan_source
from codemods.project import load_project
from codemods.runner import run

FIXTURE = Path(__file__).parent / "fixtures" / "reach"
#: The call names as a reviewer would grep for them.
GREP = re.compile(
    r"(sqlite3\.connect|urlopen|psycopg\w*\.connect|\w*Connection\.connect)\s*\(|getattr\(\s*urllib"
)
TARGETS = TargetSet(frozenset({"sqlite3.connect", "urllib.request.urlopen", "psycopg2.connect"}))
#: Call lines the grep finds that are no site, each for a reason the report must not list it.
NOT_SITES = {("pkg/modern.py", 39)}  # Connection.connect() of the module's own class


def grep_calls(root: Path) -> set[tuple[str, int]]:
    """(path, line) of every grep hit whose line holds a call starting there (strings do not count)."""
    hits: set[tuple[str, int]] = set()
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        call_lines = {node.lineno for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Call)}
        for number, line in enumerate(text.splitlines(), start=1):
            if GREP.search(line.split("#")[0]) and number in call_lines and not _only_in_string(line):
                hits.add((path.relative_to(root).as_posix(), number))
    return hits


def _only_in_string(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(('return "', "return '"))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "reach"
    shutil.copytree(FIXTURE, root)
    (root / "pyproject.toml").write_text("[project]\nname = 'reach'\n")
    return root


def test_every_grep_hit_that_is_a_call_is_a_site(tree: Path) -> None:
    project = load_project([tree])
    result = run(project, project.plan.work_phases, dry_run=True, chain=False, workers=1, cache=False)
    sites = {(site.path, site.line) for site in result.sites}
    hits = grep_calls(tree) - NOT_SITES
    assert hits, "the grep must find the fixture's calls"
    assert not NOT_SITES & sites
    assert hits <= sites, f"calls missing from the report: {sorted(hits - sites)}"
    assert not result.errors


def test_each_shape_gets_its_status_and_reason(tree: Path) -> None:
    project = load_project([tree])
    result = run(project, project.plan.work_phases, dry_run=True, chain=False, workers=1, cache=False)
    found = {(s.path, s.line): (s.rule, s.status, s.reason) for s in result.sites}
    assert found == {
        # psycopg 3 (PS104): an alias, a class's connect, a re-export from a project module, an object
        ("pkg/modern.py", 11): ("PS104", "reported", "psycopg3-not-supported"),  # pg.connect
        ("pkg/modern.py", 15): ("PS100", "migratable", None),  # psycopg2 in the same module
        ("pkg/modern.py", 19): ("PS104", "reported", "psycopg3-not-supported"),  # AsyncConnection.connect
        ("pkg/modern.py", 23): ("PS104", "reported", "psycopg3-not-supported"),  # pg3.Connection.connect
        ("pkg/modern.py", 27): ("PS104", "reported", "dynamic-callee"),  # holder.psycopg.connect
        ("pkg/net.py", 5): ("PS301", "reported", "dynamic-callee"),  # getattr(urllib.request, "urlopen")
        ("pkg/net.py", 6): ("PS301", "reported", "dynamic-callee"),  # getattr(urllib.request, name)
        ("pkg/net.py", 7): ("PS301", "migratable", None),
        ("pkg/net.py", 12): ("PS301", "reported", "dynamic-callee"),  # session.urllib.request.urlopen
        ("pkg/net.py", 16): ("PS201", "reported", "ambiguous-module"),  # never imported
        # from pkg.utils import sqlite3, where pkg.utils chooses pysqlite3 or sqlite3: followed
        ("pkg/store.py", 11): ("PS201", "migratable", "conn-stored"),
        ("pkg/store.py", 12): ("PS201", "migratable", "conn-stored"),  # import sqlite3 as lite
        ("pkg/store.py", 15): ("PS201", "reported", "dynamic-callee"),  # self.m.sqlite3.connect
        ("pkg/store.py", 18): ("PS201", "migratable", None),  # utils.sqlite3.connect
        ("pkg/store.py", 21): ("PS201", "reported", "ambiguous-module"),  # built at run time
        ("pkg/store.py", 24): ("PS301", "migratable", None),  # from .utils import request_module
    }


def test_migrating_through_a_project_module_rewrites_the_call_and_drops_the_import(tree: Path) -> None:
    project = load_project([tree])
    result = run(project, project.plan.phases, dry_run=False, chain=True, workers=1, cache=False)
    assert not result.errors
    store = (tree / "pkg" / "store.py").read_text()
    assert "self.conn = db_utils.sqlite.connect(path)" in store
    assert "return db_utils.sqlite.connect(path)" in store  # utils.sqlite3.connect
    assert "from pkg.utils import sqlite3" not in store
    assert "return self.m.sqlite3.connect(path)" in store  # reported, untouched
    assert "maybe_sqlite3.connect(path)" in store
    compile(store, "store.py", "exec")


def test_a_project_module_that_rebinds_the_name_is_not_followed() -> None:
    facts = {
        "pkg/a.py": scan_source("import sqlite3\n", TARGETS, package="pkg"),
        "pkg/b.py": scan_source("import sqlite3\nsqlite3 = None\n", TARGETS, package="pkg"),
        "pkg/c.py": scan_source("from pkg.a import sqlite3\n", TARGETS, package="pkg"),
    }
    names = {"pkg/a.py": "pkg.a", "pkg/b.py": "pkg.b", "pkg/c.py": "pkg.c"}
    aliases = project_module_aliases(facts, names, TARGETS.modules)
    assert aliases == {"pkg.a.sqlite3": "sqlite3", "pkg.c.sqlite3": "sqlite3"}


def test_look_alike_names_are_not_candidates() -> None:
    source = (
        "import sqlite4 as sqlite3\n"
        "def f(db, connect):\n"
        "    db.connect()\n"
        "    connect()\n"
        "    sqlite3.connect('x')\n"
        "    return 'sqlite3.connect(1)'\n"
    )
    assert scan_source(source, TARGETS).candidates == []


def test_columns_are_characters_like_libcst_s() -> None:
    source = "import sqlite3\nnom = 'é'; sqlite3.connect('x')\n"
    (candidate,) = scan_source(source, TARGETS).candidates
    assert (candidate.line, candidate.column) == (2, 12)


def test_a_project_module_named_like_the_stdlib_one_is_known_not_to_be_it() -> None:
    source = "from . import sqlite3\nsqlite3.connect('a')\n"
    own = scan_source(source, TARGETS, package="pkg", project_modules=frozenset({"pkg.sqlite3"}))
    assert own.candidates == []
    unknown = scan_source(source, TARGETS, package="pkg")
    assert [c.kind for c in unknown.candidates] == ["ambiguous-module"]
