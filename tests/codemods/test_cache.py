"""The result cache: an unchanged tree is answered from ``.poolshift_cache/``; anything that changes a
file's answer (its bytes, the rules, the project's facts) is a different key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codemods.cache import CACHE_DIR, ResultCache
from codemods.cli import main
from codemods.legacy_helpers import references
from codemods.project import load_project
from codemods.runner import RunResult, run

FILES = {
    "app/__init__.py": "",
    "app/db.py": "import sqlite3\n\ndef connect(path):\n    return sqlite3.connect(path)\n",
    "app/web.py": "import urllib.request\n\ndef get(url):\n    return urllib.request.urlopen(url)\n",
    "app/plain.py": "def add(a, b):\n    return a + b\n",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def scan(root: Path, *, cache: bool = True, select: tuple[str, ...] = ()) -> RunResult:
    project = load_project([root], select=select)
    return run(project, project.plan.phases, dry_run=True, chain=False, workers=1, cache=cache)


def summary(result: RunResult) -> list[tuple[str, int, str, str | None]]:
    return [(s.path, s.line, s.status, s.reason) for s in result.sites]


def test_an_unchanged_tree_is_answered_from_the_cache(tree: Path) -> None:
    cold = scan(tree)
    assert (cold.files_first_pass, cold.files_cached) == (2, 0)
    warm = scan(tree)
    assert (warm.files_parsed, warm.files_first_pass, warm.files_cached) == (0, 0, 2)
    assert summary(warm) == summary(cold)
    assert [s.phase for s in warm.sites] == [s.phase for s in cold.sites]


def test_an_edited_file_is_recomputed_and_only_it(tree: Path) -> None:
    scan(tree)
    (tree / "app" / "db.py").write_text("import sqlite3\n\nMEMORY = sqlite3.connect(':memory:')\n")
    result = scan(tree)
    assert (result.files_first_pass, result.files_cached) == (1, 1)
    assert ("app/db.py", 3, "reported", "memory-database") in summary(result)


def test_another_rule_selection_is_another_key(tree: Path) -> None:
    scan(tree)
    only_http = scan(tree, select=("PS301",))
    assert [s.rule for s in only_http.sites] == ["PS301"]


def test_project_facts_are_part_of_the_key(tree: Path) -> None:
    # app/web.py's answer depends on another file: once app/compat.py re-exports sqlite3, web.py's
    # call through it becomes migratable although web.py's own bytes did not change.
    (tree / "app" / "web.py").write_text("from app.compat import sqlite3\n\nconn = sqlite3.connect('a.db')\n")
    (tree / "app" / "compat.py").write_text("sqlite3 = None\n")
    before = [s for s in scan(tree).sites if s.path == "app/web.py"]
    assert [(s.status, s.reason) for s in before] == [("reported", "ambiguous-module")]
    (tree / "app" / "compat.py").write_text("import sqlite3\n")
    after = [s for s in scan(tree).sites if s.path == "app/web.py"]
    assert [(s.status, s.reason) for s in after] == [("migratable", "conn-stored")]


def test_no_cache_neither_reads_nor_writes(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(tree), "--no-cache", "-q"]) == 0
    assert not (tree / CACHE_DIR).exists()
    assert main(["scan", str(tree), "-q"]) == 0
    assert (tree / CACHE_DIR / ".gitignore").read_text().endswith("*\n")
    assert (tree / CACHE_DIR / "CACHEDIR.TAG").is_file()
    result = scan(tree, cache=False)
    assert result.files_cached == 0


def test_a_corrupt_cache_is_ignored_and_replaced(tree: Path) -> None:
    cold = scan(tree)
    for table in (tree / CACHE_DIR).rglob("*.json"):
        table.write_text('{"format": 1, "entries": ')  # torn by something else than poolshift
    again = scan(tree)
    assert summary(again) == summary(cold)
    assert again.files_cached == 0
    assert scan(tree).files_cached == 2


def test_saving_replaces_the_file_whole(tree: Path) -> None:
    # Two runs at once each load, then save: whichever rename lands last, the file is a whole document.
    first, second = ResultCache(tree), ResultCache(tree)
    first.put("outcomes", "a", {"n": 1})
    second.put("outcomes", "b", {"n": 2})
    first.save()
    second.save()
    (table,) = (tree / CACHE_DIR).rglob("outcomes.json")
    assert json.loads(table.read_text())["entries"] == {"b": {"n": 2}}
    assert [p.name for p in table.parent.iterdir() if p.name.startswith(".")] == []


def test_migrate_never_takes_its_rewrites_from_the_cache(tree: Path) -> None:
    scan(tree)
    project = load_project([tree])
    result = run(project, project.plan.phases, dry_run=False, chain=True, workers=1)
    assert result.files_cached == 0
    assert "db_utils.sqlite.connect" in (tree / "app" / "db.py").read_text()


def test_helper_references_are_computed_once_per_file_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run asked twice (the cleanup's list, scan's helper summary), and every run asked again: a
    LibCST parse and name resolution of every file naming a helper (pgevents: 2.3 s of a 2.3 s scan)."""
    sources = {"app/jobs.py": "from app.db import get_conn\n\n\ndef run():\n    return get_conn()\n"}
    modules = {"app/jobs.py": "app.jobs"}
    helpers = ("app.db.get_conn",)
    computed: list[str] = []
    compute = references._references_in

    def counting(path: str, *args: object) -> tuple[str, ...]:
        computed.append(path)
        return compute(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(references, "_references_in", counting)
    monkeypatch.setattr(references, "_FOUND", {})
    cache = ResultCache(tmp_path)
    first = references.find_legacy_references(sources, modules, helpers, cache)
    assert references.find_legacy_references(sources, modules, list(helpers), cache) == first
    cache.save()
    monkeypatch.setattr(references, "_FOUND", {})  # a new process: only the cache remembers
    assert references.find_legacy_references(sources, modules, helpers, ResultCache(tmp_path)) == first
    assert computed == ["app/jobs.py"]
    assert any("get_conn" in line for line in first)
    edited = {"app/jobs.py": sources["app/jobs.py"] + "\n\nAGAIN = get_conn\n"}
    again = references.find_legacy_references(edited, modules, helpers, ResultCache(tmp_path))
    assert len(again) > len(first)
    assert computed == ["app/jobs.py", "app/jobs.py"]
