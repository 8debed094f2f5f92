"""Read-only runs skip reading files unchanged since an earlier run (``stat`` facts in the cache).

Whatever the shortcut, every report is the one a ``--no-cache`` run prints: cold, warm, after an edit that
keeps a file's size and mtime (only its ctime tells), and after an ordinary edit.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from codemods import __version__
from codemods import cache as cache_module
from codemods.cache import CACHE_DIR, RACY_MARGIN_NS, ResultCache, StatFacts, content_key, signature
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


def _signature_of(tree: Path, path: str) -> list[int]:
    return list(signature((tree / path).stat()))


#: Every word a scan of TREE asks about, said absent: believed, it would hide any candidate.
WORDS = ["_connection", "as_string", "connect", "get_connection", "get_postgres_connection", "poolshift:",
         "prepare", "psycopg", "psycopg2", "sqlite3", "url", "urllib", "urlopen"]  # fmt: skip
ALL_ABSENT = [[], WORDS, True, True]

FOREIGN_TABLES = {
    "an older format": lambda tree: {
        "format": 1,
        "entries": {"app/free1.py": {"sig": _signature_of(tree, "app/free1.py"), "found": [], "absent": []}},
    },
    "a facts index out of range": lambda tree: {
        "format": StatFacts.FORMAT,
        "facts": [ALL_ABSENT],
        "entries": {"app/free1.py": [*_signature_of(tree, "app/free1.py"), 3, None]},
    },
    "facts of the wrong types": lambda tree: {
        "format": StatFacts.FORMAT,
        "facts": [[[], WORDS, 1, None], [[], [*WORDS, 3], True, None], "x"],
        "entries": {
            "app/free1.py": [*_signature_of(tree, "app/free1.py"), 0, None],
            "app/free2.py": [*_signature_of(tree, "app/free2.py"), 1, None],
            "app/free3.py": [*_signature_of(tree, "app/free3.py"), 2, None],
        },
    },
    "entries of the wrong shape": lambda tree: {
        "format": StatFacts.FORMAT,
        "facts": [ALL_ABSENT],
        "entries": {
            "app/free0.py": {"sig": "x"},
            "app/free1.py": [*_signature_of(tree, "app/free1.py"), 0],
            "app/free2.py": [*_signature_of(tree, "app/free2.py"), 0, 7],
            "app/free3.py": [*_signature_of(tree, "app/free3.py"), "0", None],
        },
    },
    "not a table": lambda tree: ["format", StatFacts.FORMAT],
}


@pytest.mark.parametrize("table_of", FOREIGN_TABLES.values(), ids=FOREIGN_TABLES)
def test_a_foreign_stat_table_is_ignored(
    tree: Path, capsys: pytest.CaptureFixture[str], table_of: Callable[[Path], object]
) -> None:
    """Entries it cannot vouch for are not used: their files are read (the lies above would hide
    ``app/free1.py``'s edit below: each says it holds none of the words)."""
    (tree / "app" / "free1.py").write_bytes(NEW_CANDIDATE)
    expected = report(tree, capsys, "--no-cache")
    assert "app/free1.py" in json.dumps(expected)
    table = tree / CACHE_DIR / __version__ / f"{StatFacts.TABLE}.json"
    table.parent.mkdir(parents=True)
    table.write_text(json.dumps(table_of(tree)))
    assert report(tree, capsys) == expected


@pytest.mark.usefixtures("no_margin")
def test_a_well_formed_entry_is_believed(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The control for the test above: the same lie, well formed and with the file's signature, hides the
    candidate (what vouches for an entry is the stat signature, which the file's edit changes)."""
    (tree / "app" / "free1.py").write_bytes(NEW_CANDIDATE)
    table = tree / CACHE_DIR / __version__ / f"{StatFacts.TABLE}.json"
    table.parent.mkdir(parents=True)
    lie = {"app/free1.py": [*_signature_of(tree, "app/free1.py"), 0, None]}
    table.write_text(json.dumps({"format": StatFacts.FORMAT, "facts": [ALL_ABSENT], "entries": lie}))
    assert "app/free1.py" not in json.dumps(report(tree, capsys))


#: Mentions ``connect`` (helper discovery summarises it) and none of the rules' words.
MENTIONS_CONNECT = b"def reconnect(pool):\n    return pool.reconnect()\n"
#: HELPER with the same size, no longer a helper: it returns ``psycopg3.connect(...)``, a call its
#: ``ast`` summary cannot tell from a helper's (only LibCST's answer, keyed by content too, can).
HELPER_NO_MORE = HELPER.replace("psycopg2.connect(", "psycopg3.connect(").encode()


@pytest.mark.usefixtures("no_margin")
def test_discovery_answers_are_found_by_content_key_without_reading(tree: Path) -> None:
    """A file that mentions ``connect`` but no rule's word is not read by a warm run: its discovery
    answers are found by the content key its stat entry holds."""
    (tree / "app" / "pool.py").write_bytes(MENTIONS_CONNECT)

    def scan() -> tuple[set[str], tuple[str, ...]]:
        project = load_project([tree], read_only=True)
        run(project, project.plan.phases, dry_run=True, chain=False, include_unassigned=True, workers=1)
        read = {path for path, entry in project.files.snapshot.items() if entry is not None}
        return read, project.legacy_helpers

    cold_read, helpers = scan()
    assert "app/pool.py" in cold_read
    assert helpers == ("app.db.get_connection",)
    warm_read, warm_helpers = scan()
    assert "app/pool.py" not in warm_read
    assert warm_helpers == helpers
    entry = stat_entries(tree)["app/pool.py"]
    assert isinstance(entry, list)
    assert entry[6] == content_key(MENTIONS_CONNECT)


@pytest.mark.usefixtures("no_margin")
def test_a_helper_file_unchanged_while_its_callers_change(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = assert_same_as_without_cache(tree, capsys)
    assert_same_as_without_cache(tree, capsys)  # warm: the helper from its recorded content key
    (tree / "app" / "free2.py").write_text(HELPER_USER.replace("users", "orders"))
    (tree / "app" / "users.py").write_text(HELPER_USER + "\n\ndef again():\n    return get_connection()\n")
    changed = assert_same_as_without_cache(tree, capsys)
    assert changed != first
    assert "app/free2.py" in json.dumps(changed)
    assert "app.db.get_connection" in json.dumps(changed)


@pytest.mark.usefixtures("no_margin")
def test_a_helper_file_edited_in_place_keeping_size_and_mtime(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its recorded content key no longer names it: only the ctime tells, and discovery runs again."""
    first = assert_same_as_without_cache(tree, capsys)
    assert_same_as_without_cache(tree, capsys)
    helper = tree / "app" / "db.py"
    before = helper.stat()
    assert len(HELPER_NO_MORE) == before.st_size
    with open(helper, "r+b") as handle:
        handle.write(HELPER_NO_MORE)
    os.utime(helper, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (helper.stat().st_size, helper.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    edited = assert_same_as_without_cache(tree, capsys)
    assert "app.db.get_connection" in json.dumps(first)
    assert "app.db.get_connection" not in json.dumps(edited)
    assert assert_same_as_without_cache(tree, capsys) == edited  # warm again


def test_recorded_facts_keep_what_an_earlier_run_learnt_of_the_same_content(tree: Path) -> None:
    path = "app/free2.py"
    info = (tree / path).stat()
    started = max(info.st_mtime_ns, info.st_ctime_ns) + RACY_MARGIN_NS + 1
    first = StatFacts(ResultCache(tree))
    first.started_ns = started
    first.record(path, info, {b"connect": False, b"sqlite3": False}, utf8=True, decodes=True, key="k1")
    first.save()
    second = StatFacts(ResultCache(tree))
    second.started_ns = started
    second.record(path, info, {b"url": False}, utf8=True)  # read again, asked other words
    second.save()
    found = StatFacts(ResultCache(tree)).lookup(path, info)
    assert found is not None
    facts, key = found
    assert facts.found == frozenset()
    assert facts.absent == {b"connect", b"sqlite3", b"url"}
    assert (facts.utf8, facts.decodes, key) == (True, True, "k1")
    assert facts.answer((b"get_postgres_connection",)) is False  # holds a part known absent
    assert facts.answer((b"psycopg2",)) is None  # never asked: read the file to know


@pytest.mark.usefixtures("no_margin")
@pytest.mark.parametrize("git", [False, True], ids=["walk", "git"])
def test_a_warm_run_takes_one_stat_per_unchanged_file(
    tree: Path, monkeypatch: pytest.MonkeyPatch, git: bool
) -> None:
    """Outside git the walk's listing needs none (the directory entries give the types) and the store
    takes it; in git the listing's ``lstat`` is the one the store uses."""
    if git:
        subprocess.run(["git", "init", "-q", str(tree)], check=True)

    def scan() -> None:
        project = load_project([tree], read_only=True)
        run(project, project.plan.phases, dry_run=True, chain=False, include_unassigned=True, workers=1)

    scan()
    calls: list[str] = []
    real_stat, real_lstat = os.stat, os.lstat

    def counting(real: Callable[..., os.stat_result]) -> Callable[..., os.stat_result]:
        def stat(path: str | os.PathLike[str], *args: object, **kwargs: object) -> os.stat_result:
            calls.append(os.fspath(path))
            return real(path, *args, **kwargs)

        return stat

    monkeypatch.setattr(os, "stat", counting(real_stat))
    monkeypatch.setattr(os, "lstat", counting(real_lstat))
    scan()
    for path in FREE_FILES:
        assert sum(call.endswith(path) for call in calls) == 1, path
