"""Read-only runs judge plain redirect-rule files without LibCST's metadata; both routes must agree.

Every fixture of PS104, PS201 and PS301, the reach fixtures and a sample of the standard library's candidate
files go through both: where the detached route answers (it declines anything it cannot show plain),
its sites must equal the full LibCST analysis's, message for message. The real run (scan) then merges
the first pass's ``dynamic-callee``/``ambiguous-module`` sites the same way on both routes.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from codemods.detached import detached_sites
from codemods.first_pass import TargetSet, scan_source
from codemods.rules._redirect import RedirectCallRule
from codemods.rules.base import RuleOptions, Site
from codemods.rules.psycopg3_connect import Psycopg3ConnectRule
from codemods.rules.sqlite3_connect import Sqlite3ConnectRule
from codemods.rules.urlopen import UrlopenRule
from codemods.runner import _first_pass_sites, _merge_sites
from codemods.transform import FileResult, decode_source, rules_text, transform_bytes

HERE = Path(__file__).parent
FIXTURES = sorted(
    [
        *(HERE / "rules" / "fixtures" / "psycopg3_connect").glob("*.before.py"),
        *(HERE / "rules" / "fixtures" / "sqlite3_connect").glob("*.before.py"),
        *(HERE / "rules" / "fixtures" / "urlopen").glob("*.before.py"),
        *(HERE / "fixtures" / "reach" / "pkg").glob("*.py"),
    ]
)
STDLIB = Path(sysconfig.get_paths()["stdlib"])
STDLIB_SAMPLE = [
    STDLIB / name
    for name in (
        "sqlite3/__init__.py",
        "sqlite3/__main__.py",
        "urllib/request.py",
        "test/test_sqlite3/test_backup.py",
        "test/test_sqlite3/test_transactions.py",
        "test/test_urllib2_localnet.py",
        "dbm/sqlite3.py",
    )
    if (STDLIB / name).is_file()
]
RULES: tuple[type[RedirectCallRule], ...] = (Psycopg3ConnectRule, Sqlite3ConnectRule, UrlopenRule)


def position(site: Site) -> tuple[int, int]:
    return site.line, site.column


def both_routes(path: Path, rule: type[RedirectCallRule]) -> tuple[list[Site] | None, list[Site]]:
    """Each route's sites after the runner merges the first pass's own (``getattr`` lookups...)."""
    data = path.read_bytes()
    text = rules_text(decode_source(data))
    first_pass = _first_pass_sites([rule], "m.py", scan_source(text, TargetSet(rule.TARGETS)))
    detached = detached_sites(rule, RuleOptions(), "m.py", text, "")
    full = transform_bytes(data, [rule], path="m.py", dry_run=True, module_name="m", package_name="")
    assert full.error is None
    _merge_sites(full, first_pass)
    if detached is None:
        return None, full.sites
    merged = FileResult("m.py", data, None, detached)
    _merge_sites(merged, first_pass)
    return merged.sites, full.sites


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.RULE_ID)
@pytest.mark.parametrize("path", FIXTURES + STDLIB_SAMPLE, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_the_detached_route_agrees_with_libcst_where_it_answers(
    path: Path, rule: type[RedirectCallRule]
) -> None:
    detached, full = both_routes(path, rule)
    if detached is None:
        return  # declined: the file goes through LibCST
    assert sorted(detached, key=position) == sorted(full, key=position)


def test_the_detached_route_answers_most_plain_files() -> None:
    answered = [path for path in FIXTURES for rule in RULES if both_routes(path, rule)[0] is not None]
    assert len(answered) >= len(FIXTURES)  # of 2 x len(FIXTURES) pairs: most files are plain for both


@pytest.mark.parametrize(
    "source",
    [
        "import sqlite3\nsqlite3.connect = lambda *a: None\nsqlite3.connect('a')\n",  # patched
        "from sqlite3 import *\nconnect('a')\n",  # star import
        "import sqlite3\nfrom unittest import mock\nmock.patch('sqlite3.connect')\nsqlite3.connect('a')\n",
        "import sqlite3\nsetattr(sqlite3, b'connect', None)\nsqlite3.connect('a')\n",
        "import sqlite3\nimport db_utils\nsqlite3.connect('a')\n",  # a name the rewrite needs
        "import sqlite3\ndef f(sqlite3):\n    sqlite3.connect('a')\n",  # another binding of the name
        # Flask's g in one function, a parameter g in another: which is stored into takes scopes
        "import sqlite3\nfrom flask import g\ng.db = sqlite3.connect('a')\ndef f(g):\n    g.db = 1\n",
    ],
)
def test_files_that_need_the_full_analysis_are_declined(source: str) -> None:
    assert detached_sites(Sqlite3ConnectRule, RuleOptions(), "m.py", source, "") is None


def test_a_connection_kept_on_flasks_g_is_not_long_lived_on_either_route() -> None:
    source = (
        "import sqlite3\nimport flask\nfrom flask import g\n"
        "def get_db():\n    g.db = sqlite3.connect('a')\n    return g.db\n"
        "def other():\n    flask.g.db = sqlite3.connect('a')\n"
        "class Repository:\n    def open(self):\n        self.db = sqlite3.connect('a')\n"
    )
    detached = detached_sites(Sqlite3ConnectRule, RuleOptions(), "m.py", source, "")
    assert detached is not None  # answered, not declined
    full = transform_bytes(source.encode(), [Sqlite3ConnectRule], path="m.py", dry_run=True, module_name="m")
    for sites in (detached, full.sites):
        assert [(site.line, site.reason) for site in sorted(sites, key=position)] == [
            (5, None),
            (8, None),
            (11, "conn-stored"),
        ]
