"""``scan``, ``check`` and ``status`` predict what ``migrate`` does, on hostile files too.

The read-only commands judge plain files without LibCST (codemods.detached); that shortcut is only taken
where LibCST surely gets through the file (codemods.limits.libcst_surely_succeeds). Every hostile shape
here is small but over the thresholds (nesting of DEEP_NESTING levels and more, trees too large for the
time limit), and each file's outcome (sites with status and reason, or the error code) must be the same
from ``scan``, ``check`` and ``migrate --all --diff``, all through the real command line.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from codemods.limits import DEEP_NESTING, FASTEST_NODES_PER_S, SLOWEST_NODES_PER_S
from tests.codemods.test_depth import poolshift as run_cli

CANDIDATE = "import sqlite3\nconn = sqlite3.connect('app.db')\n"
LEVELS = DEEP_NESTING + 50  # deep enough to leave the shortcut, shallow enough for LibCST

#: Deep shapes (by the measure limits.py uses), each with a candidate call.
DEEP = {
    "long_concatenation.py": CANDIDATE + "s = " + " ".join(["'p'"] * 5000) + "\n",
    "concatenation.py": CANDIDATE + "s = (" + " ".join(f"'p{i}'" for i in range(LEVELS)) + ")\n",
    "concatenated_argument.py": "import sqlite3\nconn = sqlite3.connect(" + " ".join(["'p'"] * 5000) + ")\n",
    "fstring_concatenation.py": CANDIDATE + "s = " + " ".join(f"f'{{x}}{i}'" for i in range(LEVELS)) + "\n",
    "and_chain.py": CANDIDATE + "s = " + " and ".join(f"a{i}" for i in range(LEVELS)) + "\n",
    "plus_chain.py": CANDIDATE + "s = " + " + ".join(f"a{i}" for i in range(LEVELS)) + "\n",
    "subscripts.py": CANDIDATE + "s = a" + "[0]" * LEVELS + "\n",
    "elif_ladder.py": CANDIDATE
    + "if a == -1:\n    pass\n"
    + "".join(f"elif a == {i}:\n    pass\n" for i in range(LEVELS)),
    "lambdas.py": CANDIDATE + "s = " + "lambda: " * LEVELS + "1\n",
    "nested_fstrings.py": CANDIDATE + "s = f'{f\"{x:>{w}}\"}'\n",
    "deep_lists.py": "import sqlite3\nvalue = " + "[" * LEVELS + "sqlite3.connect('a')" + "]" * LEVELS + "\n",
    "deep_call.py": "import sqlite3\nconn = sqlite3.connect(" + "f(" * LEVELS + "'a'" + ")" * LEVELS + ")\n",
}
#: What Python itself refuses, or the engine refuses before parsing.
REFUSED = {
    "nested_calls.py": ("import sqlite3\nsqlite3.connect(" + "f(" * 500 + "1" + ")" * 500 + ")\n").encode(),
    "deep_blocks.py": (
        "import sqlite3\n"
        + "".join(" " * level + "if x:\n" for level in range(100))
        + " " * 100
        + "sqlite3.connect('a')\n"
    ).encode(),
    "nul_bytes.py": b"import sqlite3\nsqlite3.connect('a')\x00\n",
    "latin1.py": b"# -*- coding: latin-1 -*-\nimport sqlite3\nsqlite3.connect('\xe9')\n",
    "bad_utf8.py": b"import sqlite3\nsqlite3.connect('\xff\xfe')\n",
    "utf16.py": "import sqlite3\nsqlite3.connect('a')\n".encode("utf-16"),
    "over_size.py": CANDIDATE.encode() + b"# padding\n" * (2 * 1024 * 1024 // 10 + 1),
}
#: With ``--timeout TIMEOUT_S``: trees LibCST would not get through in time (refused before it
#: tries), next to an ordinary file.
TIMEOUT_S = 2
TOO_LARGE_NODES = TIMEOUT_S * FASTEST_NODES_PER_S * 2
TOO_SLOW = {
    "long_line.py": "import sqlite3\nx = [" + "1, " * TOO_LARGE_NODES + "sqlite3.connect('a')]\n",
    "semicolons.py": CANDIDATE + "x = 1; " * (TOO_LARGE_NODES // 3) + "\n",
    "literal_dict.py": CANDIDATE
    + "D = {\n"
    + "".join(f"    'key_{i}': {i},\n" for i in range(TOO_LARGE_NODES // 2))
    + "}\n",
}


Site = tuple[str, int, int, str, str | None]  # rule, line, column, status, reason


def outcomes(report: dict[str, Any]) -> dict[str, tuple[tuple[Site, ...], str | None]]:
    """Per file: its sites (rule, position, status, reason) and its error code."""
    sites: dict[str, list[Site]] = {}
    for site in report["sites"]:
        position = (site["rule"], site["line"], site["column"], site["status"], site["reason"])
        sites.setdefault(site["path"], []).append(position)
    errors = {error["path"]: error["error"] for error in report["errors"]}
    return {path: (tuple(sorted(sites.get(path, []))), errors.get(path)) for path in {*sites, *errors}}


def poolshift(root: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """The real command line on ``root`` (``--no-cache --format json``), its JSON report."""
    done, report = run_cli(root, *args)
    return done, report


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def assert_read_only_commands_predict_migrate(root: Path, *options: str) -> dict[str, Any]:
    """scan's per-file outcomes equal migrate --diff's and check's; status counts the same; returns
    migrate's report."""
    scanned, scan_report = poolshift(root, "scan", *options)
    checked, check_report = poolshift(root, "check", *options)
    diffed, migrate_report = poolshift(root, "migrate", "--all", "--diff", *options)
    for done in (scanned, checked, diffed):
        assert "Traceback" not in done.stderr
    expected = outcomes(migrate_report)
    assert outcomes(scan_report) == expected
    assert outcomes(check_report) == expected
    _, status_report = poolshift(root, "status", *options)
    statuses = Counter(site[3] for sites, _ in expected.values() for site in sites)
    total = status_report["total"]
    assert total["remaining"] == statuses["migratable"]
    assert total["reported"] == statuses["reported"]
    assert total["errors"] == sum(error is not None for _, error in expected.values())
    return migrate_report


def test_deep_and_refused_files_get_the_same_outcome_from_every_command(tmp_path: Path) -> None:
    files = {name: text.encode() for name, text in DEEP.items()} | REFUSED
    report = assert_read_only_commands_predict_migrate(write_tree(tmp_path, files), "-j", "2")
    found = outcomes(report)
    errors = {path: error for path, (_, error) in found.items() if error is not None}
    assert errors == {
        "long_concatenation.py": "too-deeply-nested",
        "concatenated_argument.py": "too-deeply-nested",
        "nested_calls.py": "syntax-error",
        "deep_blocks.py": "syntax-error",
        "nul_bytes.py": "syntax-error",
        "bad_utf8.py": "undecodable",
        "over_size.py": "file-too-large",
    }
    migratable = {path for path, (sites, _) in found.items() if any(s[3] == "migratable" for s in sites)}
    assert migratable == set(DEEP) - set(errors) | {"latin1.py"}


@pytest.mark.parametrize("name", sorted(TOO_SLOW))
def test_a_tree_too_large_for_the_time_limit_is_refused_by_every_command_before_libcst_tries(
    tmp_path: Path, name: str
) -> None:
    root = write_tree(tmp_path, {name: TOO_SLOW[name].encode(), "ordinary.py": CANDIDATE.encode()})
    report = assert_read_only_commands_predict_migrate(root, "--timeout", str(TIMEOUT_S), "-j", "1")
    errors = {error["path"]: error for error in report["errors"]}
    assert list(errors) == [name]
    assert errors[name]["error"] == "timeout"
    assert "not tried" in errors[name]["detail"]  # predicted, not stopped by the timer
    assert [site["path"] for site in report["sites"]] == ["ordinary.py"]


def test_the_shortcut_bounds_sit_between_ordinary_files_and_refused_ones() -> None:
    """The shortcut's bound is below the refusal's, and an ordinary large module fits the shortcut."""
    assert SLOWEST_NODES_PER_S < FASTEST_NODES_PER_S
    assert 60 * SLOWEST_NODES_PER_S > 25_000  # _pydecimal.py, among the stdlib's largest modules
