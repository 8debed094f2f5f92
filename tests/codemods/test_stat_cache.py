"""Read-only runs skip reading files unchanged since an earlier run (``stat`` facts in the cache).

Whatever the shortcut, every report is the one a ``--no-cache`` run prints: cold, warm, after an edit that
keeps a file's size and mtime (only its ctime tells), and after an ordinary edit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from codemods import __version__
from codemods import cache as cache_module
from codemods.cache import CACHE_DIR, RACY_MARGIN_NS, ResultCache, StatFacts, signature
from codemods.cli import main
from codemods.project import load_project
from codemods.runner import run

HELPER = "import psycopg2\n\n\ndef get_connection():\n    return psycopg2.connect('dbname=shop')\n"
HELPER_USER = "from app.db import get_connection\n\n\ndef users():\n    return get_connection().cursor()\n"
SQLITE_USER = "import sqlite3\n\n\ndef open_db(path):\n    return sqlite3.connect(path)\n"
SUPPRESSED = (
    "import sqlite3\n\n\ndef open_db(path):\n"
    "    return sqlite3.connect(path)  # poolshift: ignore[PS201]\n\n\n"
    "X = 1  # poolshift: ignore[PS301]\n"
)
#: The same size as EDITED_IN_PLACE, with none of the words a rule or helper lookup asks about.
NEW_CANDIDATE = b"import sqlite3\nDB = sqlite3.connect('a.db')\n"
CANDIDATE_FREE = b"X = '" + b"y" * (len(NEW_CANDIDATE) - 7) + b"'\n"
FREE_FILES = [f"app/free{i}.py" for i in range(4)]

TREE: dict[str, bytes] = {
    "pyproject.toml": b"[project]\nname = 'shop'\n",
    "app/__init__.py": b"",
    "app/db.py": HELPER.encode(),
    "app/users.py": HELPER_USER.encode(),
    "app/store.py": SQLITE_USER.encode(),
    "app/quiet.py": SUPPRESSED.encode(),
    "app/latin.py": "# -*- coding: latin-1 -*-\nNAME = 'caf\xe9'\n".encode("latin-1"),
    **dict.fromkeys(FREE_FILES, CANDIDATE_FREE),
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for relpath, data in TREE.items():
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_bytes(data)
    return tmp_path


@pytest.fixture
def no_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Facts of files written a moment ago are kept (the test writes them; no 2 s wait per step).

    The ctime of any later edit is still newer than the run that recorded them, which is what is tested.
    """
    monkeypatch.setattr(cache_module, "RACY_MARGIN_NS", 0)


def report(root: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> dict[str, object]:
    capsys.readouterr()
    code = main(["scan", str(root), "-q", "--format", "json", *flags])
    document = json.loads(capsys.readouterr().out)
    assert isinstance(document, dict)
    return {"exit": code, **document}


def assert_same_as_without_cache(root: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    expected = report(root, capsys, "--no-cache")
    assert report(root, capsys) == expected
    return expected


def stat_entries(root: Path) -> dict[str, object]:
    path = root / CACHE_DIR / __version__ / f"{StatFacts.TABLE}.json"
    if not path.exists():
        return {}
    entries = json.loads(path.read_text())["entries"]
    assert isinstance(entries, dict)
    return entries


@pytest.mark.usefixtures("no_margin")
def test_reports_are_those_of_a_run_without_cache(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = assert_same_as_without_cache(tree, capsys)  # cold
    assert set(stat_entries(tree)) == set(TREE) - {"pyproject.toml"}
    assert assert_same_as_without_cache(tree, capsys) == first  # warm
    assert "app/free0.py" not in json.dumps(first)

    # In place, size and mtime kept: only the ctime changes, and that is enough.
    edited = tree / "app" / "free0.py"
    before = edited.stat()
    with open(edited, "r+b") as handle:
        handle.write(NEW_CANDIDATE)
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = edited.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    in_place = assert_same_as_without_cache(tree, capsys)
    assert "app/free0.py" in json.dumps(in_place)

    # An ordinary edit: a new use of the legacy helper.
    (tree / "app" / "free1.py").write_text(HELPER_USER)
    fresh = assert_same_as_without_cache(tree, capsys)
    assert "app/free1.py" in json.dumps(fresh)
    assert assert_same_as_without_cache(tree, capsys) == fresh  # warm again


@pytest.mark.usefixtures("no_margin")
def test_a_warm_read_only_run_does_not_read_unchanged_candidate_free_files(tree: Path) -> None:
    def scan() -> set[str]:
        project = load_project([tree], read_only=True)
        run(project, project.plan.phases, dry_run=True, chain=False, include_unassigned=True, workers=1)
        return {path for path, entry in project.files.snapshot.items() if entry is not None}

    assert scan() >= set(FREE_FILES)  # cold: everything is read
    warm = scan()
    assert not warm & {*FREE_FILES, "app/__init__.py"}
    assert {"app/store.py", "app/db.py", "app/quiet.py"} <= warm  # their bytes are needed
    assert "app/latin.py" in warm  # a coding cookie: its text, not its bytes, says which words it holds


@pytest.mark.usefixtures("no_margin")
def test_a_run_that_writes_reads_every_file(tree: Path) -> None:
    project = load_project([tree], read_only=True)
    run(project, project.plan.phases, dry_run=True, chain=False, workers=1)
    again = load_project([tree], read_only=True)
    run(again, again.plan.phases, dry_run=False, chain=True, workers=1)
    assert set(FREE_FILES) <= set(again.files.snapshot)
    migrate = load_project([tree])
    assert migrate.files.facts is None


def test_files_changed_just_before_the_run_are_not_recorded(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Racy clean: written a moment ago, a file may change again within the same timestamp tick."""
    assert_same_as_without_cache(tree, capsys)
    assert stat_entries(tree) == {}


def test_facts_are_kept_only_when_older_than_the_run_by_the_margin(tree: Path) -> None:
    path = "app/free2.py"
    info = (tree / path).stat()
    newest = max(info.st_mtime_ns, info.st_ctime_ns)
    words = {b"connect": False}
    for started, kept in ((newest + RACY_MARGIN_NS, False), (newest + RACY_MARGIN_NS + 1, True)):
        results = ResultCache(tree)
        facts = StatFacts(results)
        facts.started_ns = started
        facts.record(path, info, words, utf8=True)
        facts.save()
        assert (StatFacts(ResultCache(tree)).lookup(path, info) is not None) == kept
    (tree / path).write_bytes(CANDIDATE_FREE)  # same bytes, but a new ctime (and mtime)
    assert StatFacts(ResultCache(tree)).lookup(path, (tree / path).stat()) is None


def test_a_foreign_stat_table_is_ignored(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = report(tree, capsys, "--no-cache")
    table = tree / CACHE_DIR / __version__ / f"{StatFacts.TABLE}.json"
    table.parent.mkdir(parents=True)
    current = list(signature((tree / "app" / "free1.py").stat()))
    garbage = {"app/free0.py": {"sig": "x"}, "app/free1.py": {"sig": current, "found": 3, "absent": []}}
    table.write_text(json.dumps({"format": 1, "entries": garbage}))
    assert report(tree, capsys) == expected
