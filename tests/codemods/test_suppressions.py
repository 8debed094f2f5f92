"""``# poolshift: ignore`` comments through the real CLI: kept sites, counted, not failing ``check``."""

from __future__ import annotations

import json
from pathlib import Path

from codemods.rules import all_rules
from codemods.suppressions import find_suppressions
from tests.codemods.harness import run_rules
from tests.codemods.test_cli import make_tree, poolshift, snapshot

KEPT = """\
import sqlite3
from urllib.request import urlopen


def pooled(path):
    return sqlite3.connect(path)


def same_line(path):
    return sqlite3.connect(path)  # poolshift: ignore[PS201]


def line_above(path):
    # poolshift: ignore -- tests patch sqlite3.connect in this function
    return sqlite3.connect(path)


def other_rule(url):
    return urlopen(url)  # poolshift: ignore[PS201]
"""

ONLY_KEPT = """\
import sqlite3


def kept(path):
    return sqlite3.connect(path)  # poolshift: ignore[PS201, PS301]
"""


def _tree(tmp_path: Path, source: str) -> Path:
    return make_tree(tmp_path / "shop", {"app/kept.py": source.encode()})


def _sites(root: Path, path: str) -> list[dict[str, object]]:
    completed = poolshift("scan", ".", "--format", "json", cwd=root)
    assert completed.returncode == 0, completed.stderr.decode()
    return [s for s in json.loads(completed.stdout)["sites"] if s["path"] == path]


def test_suppressed_sites_are_reported_and_never_rewritten(tmp_path: Path) -> None:
    root = _tree(tmp_path, KEPT)
    sites = {(s["line"], s["rule"]): s for s in _sites(root, "app/kept.py")}
    assert sites[(6, "PS201")]["status"] == "migratable"
    assert sites[(10, "PS201")]["status"] == "suppressed"
    assert sites[(15, "PS201")]["status"] == "suppressed"  # the comment on the line above
    assert sites[(19, "PS301")]["status"] == "migratable"  # a code for another rule suppresses nothing
    unused = sites[(19, "PS000")]
    assert (unused["status"], unused["reason"]) == ("reported", "unused-suppression")
    assert poolshift("migrate", ".", "--all", cwd=root).returncode == 0
    after = snapshot(root)["app/kept.py"].decode()
    assert after.count("sqlite3.connect(path)") == 2  # the two kept
    assert "db_utils.sqlite.connect(path)" in after
    assert "import sqlite3\n" in after  # still used by the kept calls


def test_check_passes_with_suppressed_sites_and_fails_on_unused_suppressions(tmp_path: Path) -> None:
    root = _tree(tmp_path, ONLY_KEPT)
    assert poolshift("migrate", ".", "--all", cwd=root).returncode == 0
    assert snapshot(root)["app/kept.py"].decode() == ONLY_KEPT
    check = poolshift("check", "app/kept.py", cwd=root)
    assert check.returncode == 0, check.stdout.decode()
    assert b"1 suppressed" in check.stdout
    stale = ONLY_KEPT.replace("sqlite3.connect(path)", "path").replace("[PS201, PS301]", "[PS301]")
    (root / "app" / "kept.py").write_text(
        stale.replace("import sqlite3", "import sqlite3  # poolshift: ignore")
    )
    check = poolshift("check", "app/kept.py", "--format", "json", cwd=root)
    assert check.returncode == 1
    sites = [(s["line"], s["reason"]) for s in json.loads(check.stdout)["sites"]]
    assert sites == [(1, "unused-suppression")]  # not line 5: PS301 did not run on this file


def test_suppression_comment_forms() -> None:
    found = find_suppressions(
        "x = 1  # poolshift: ignore\n# poolshift: ignore[PS101,PS201]\ny = 2\ns = '# poolshift: ignore'\n"
    )
    assert [(s.line, s.covers, sorted(s.codes)) for s in found] == [(1, 1, []), (2, 3, ["PS101", "PS201"])]


def test_every_rewriting_rule_honours_a_suppression() -> None:
    """PS103 (tree-wide, its own visitor) keeps a suppressed call too, and the transform marks it."""
    source = (
        "import psycopg2.extensions as ext\n\n\n"
        "def names(conn, name):\n"
        "    kept = ext.quote_ident(name, conn)  # poolshift: ignore[PS103]\n"
        "    return kept, ext.quote_ident(name, conn)\n"
    )
    result = run_rules(source, [all_rules()["PS103"]])
    output = (result.output or b"").decode()
    assert "kept = ext.quote_ident(name, conn)  # poolshift" in output
    assert "ext.quote_ident(name, db_utils.postgres" in output
    assert sorted((s.line, s.status) for s in result.sites) == [(5, "suppressed"), (6, "migrated")]
