"""Deep and long inputs: migrated correctly, or reported with a limit code (``too-deeply-nested``,
``syntax-error`` for what Python itself refuses), never a crash, a traceback or a changed byte.

LibCST parses, analyses and renders recursively; its work on a file runs in a thread with a large stack
and a raised recursion limit (codemods.limits.run_deep), so shapes that exhausted the default limit are
simply migrated now, and what is deeper still ends as a limit code, not as exit 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from codemods import limits
from codemods.limits import DEEP_NESTING, FileTimeout, nesting_depth, run_deep, time_limit
from codemods.rules import all_rules
from codemods.transform import transform_bytes
from tests.codemods.test_guards import RecursingRule
from tests.codemods.toy_rules import ToySqliteRule

CANDIDATE = "import sqlite3\nconn = sqlite3.connect('app.db')\n"

#: Shapes Python compiles but whose LibCST tree exhausted the default recursion limit (each raised
#: RecursionError before the deep thread: rule-crashed or internal-error, exit 3).
MIGRATED = {
    "deep_lists.py": "import sqlite3\nvalue = " + "[" * 150 + "sqlite3.connect('a')" + "]" * 150 + "\n",
    "deep_calls.py": "import sqlite3\nsqlite3.connect(" + "f(" * 150 + "'a'" + ")" * 150 + ")\n",
    "plus_chain.py": CANDIDATE + "s = " + " + ".join(f"a{i}" for i in range(400)) + "\n",
    "and_chain.py": CANDIDATE + "s = " + " and ".join(f"a{i}" for i in range(400)) + "\n",
    "ternary_chain.py": CANDIDATE + "s = " + " if c else ".join(f"a{i}" for i in range(300)) + "\n",
    "attribute_chain.py": CANDIDATE + "s = a" + "".join(f".b{i}" for i in range(500)) + "\n",
    "lambdas.py": CANDIDATE + "s = " + "lambda: " * 200 + "1\n",
    "decorators.py": CANDIDATE + "".join(f"@d{i}\n" for i in range(1000)) + "def f():\n    pass\n",
    "fstrings.py": CANDIDATE + "s = f'{f\"{x:>{w}}\"}'\n",
    "concatenated.py": CANDIDATE + "s = (\n" + "".join(f"    'part{i}'\n" for i in range(400)) + ")\n",
    "concatenated_argument.py": "import sqlite3\nconn = sqlite3.connect("
    + " ".join(f"'p{i}'" for i in range(1000))
    + ")\n",
    # Pads the tree past the size from which worker processes (memory cap, own deep thread) are used.
    "padded.py": CANDIDATE + "# padding\n" * 4000,
}
#: Beyond what LibCST's own parser accepts (it gives up a few thousand levels deep).
TOO_DEEP = {
    "long_concatenation.py": CANDIDATE + "s = " + " ".join(f"'p{i}'" for i in range(5000)) + "\n",
}


def migrated(text: str) -> str:
    """What PS201 makes of these files: the import replaced, every ``sqlite3.connect`` redirected."""
    assert text.startswith("import sqlite3\n")
    body = text.removeprefix("import sqlite3\n").replace("sqlite3.connect(", "db_utils.sqlite.connect(")
    return "import db_utils.sqlite\n\n" + body


def poolshift(root: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "codemods", *args, "--no-cache", "--format", "json", "."],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    return done, json.loads(done.stdout)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    for name, text in {**MIGRATED, **TOO_DEEP}.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_deep_files_are_migrated_and_deeper_ones_get_a_limit_code(tree: Path) -> None:
    done, report = poolshift(tree, "migrate", "--all", "-j", "2")
    assert "Traceback" not in done.stderr
    errors = {error["path"]: error["error"] for error in report["errors"]}  # type: ignore[attr-defined]
    assert errors == dict.fromkeys(TOO_DEEP, "too-deeply-nested")
    assert done.returncode == 1  # files left untouched, not "poolshift crashed" (3)
    for name, text in TOO_DEEP.items():
        assert (tree / name).read_text() == text
    for name, text in MIGRATED.items():
        assert (tree / name).read_text() == migrated(text), name


def test_scan_reports_every_deep_candidate_without_a_traceback(tree: Path) -> None:
    done, report = poolshift(tree, "scan", "-j", "1")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    sites = {site["path"] for site in report["sites"]}  # type: ignore[attr-defined]
    assert set(MIGRATED) <= sites


def deep_lists(depth: int) -> bytes:
    return ("import sqlite3\nvalue = " + "[" * depth + "sqlite3.connect('a')" + "]" * depth + "\n").encode()


def test_a_recursion_error_on_a_deep_file_is_its_limit_and_on_a_shallow_one_a_bug(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rules = [rule for rule in all_rules().values() if not rule.RUNS_LAST]
    # With the interpreter's default budget, 150 nested lists exhaust it inside a rule's analysis.
    monkeypatch.setattr(limits, "RECURSION_LIMIT", 1000)
    result = transform_bytes(deep_lists(150), rules, path="deep.py")
    assert result.error == "too-deeply-nested"
    assert "levels of nesting (PS" in result.error_detail
    # The same exception from a rule on a file of ordinary depth is the rule's bug.
    shallow = b"deep = 1\n"
    crashed = transform_bytes(shallow, [ToySqliteRule, RecursingRule], path="shallow.py")
    assert crashed.error == "rule-crashed"


def test_nesting_depth_counts_what_libcst_nests() -> None:
    ordinary = Path(__file__).read_text()
    assert nesting_depth(ordinary) < DEEP_NESTING
    assert 150 <= nesting_depth("x = " + "[" * 150 + "]" * 150) < 160
    assert nesting_depth("x = " + " and ".join("a" * 300)) >= 300  # flat for CPython, nested for LibCST
    assert nesting_depth("x = (" + " ".join(["'s'"] * 300) + ")") == 300  # adjacent literals
    assert nesting_depth("x = (") == 0  # not Python


def test_the_deep_thread_restores_the_recursion_limit_and_hands_back_exceptions() -> None:
    before = sys.getrecursionlimit()
    assert run_deep(sys.getrecursionlimit) == limits.RECURSION_LIMIT
    with pytest.raises(KeyError):
        run_deep(lambda: dict[str, int]()["missing"])
    assert sys.getrecursionlimit() == before


def test_a_timeout_stops_the_deep_thread_too() -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    try:
        with pytest.raises(FileTimeout), time_limit(0.2):
            run_deep(spin)
        assert not [t for t in threading.enumerate() if t.name == "poolshift-deep" and t.is_alive()]
    finally:
        stop.set()


def test_without_room_for_the_deep_stack_the_work_runs_in_the_calling_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits, "STACK_BYTES", 1 << 50)  # no thread can get that stack
    assert run_deep(threading.current_thread) is threading.current_thread()
