"""Per-file guards: a file that does not compile, is too large, takes too long or crashes poolshift is
that file's error, reported and left byte-for-byte untouched, while the run goes on."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import libcst as cst
import pytest

from codemods.cli import EXIT_CRASH, EXIT_REMAINING, main
from codemods.limits import Limits
from codemods.project import load_project
from codemods.rules.base import PoolshiftRule
from codemods.runner import run
from tests.codemods.toy_rules import ToySqliteRule

GOOD = b"import sqlite3\n\nconn = sqlite3.connect('app.db')\n"


class SpinningRule(PoolshiftRule):
    """Never finishes a file that calls ``spin()``: only the time limit can stop it."""

    RULE_ID = "PS995"
    PREFILTER: ClassVar[tuple[str, ...]] = ("spin",)

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name) and node.func.value == "spin":
            while True:
                pass


class RecursingRule(PoolshiftRule):
    """Raises RecursionError, as LibCST's code generator does on absurdly nested input."""

    RULE_ID = "PS997"
    PREFILTER: ClassVar[tuple[str, ...]] = ("deep",)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        def down(depth: int) -> int:
            return down(depth + 1)

        down(0)
        return updated_node


def project_with(tmp_path: Path, files: dict[str, bytes], *rules: type[PoolshiftRule]):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return dataclasses.replace(load_project([tmp_path]), rules=rules or (ToySqliteRule,))


def nested_blocks(depth: int) -> bytes:
    lines = [b" " * level + b"for x in y:\n" for level in range(depth)]
    return b"import sqlite3\n" + b"".join(lines) + b" " * depth + b"sqlite3.connect('a')\n"


def nested_calls(depth: int) -> bytes:
    return b"import sqlite3\nsqlite3.connect(" + b"f(" * depth + b"1" + b")" * depth + b")\n"


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("nested.py", nested_calls(500), "syntax-error"),  # "too many nested parentheses"
        ("nul.py", b"import sqlite3\nsqlite3.connect('a')\x00\n", "syntax-error"),
        ("blocks.py", nested_blocks(25), "syntax-error"),  # "too many statically nested blocks"
        ("latin.py", b"# -*- coding: ascii -*-\nimport sqlite3\nsqlite3.connect('\xe9')\n", "undecodable"),
    ],
)
def test_a_file_python_rejects_is_reported_and_untouched(
    tmp_path: Path, name: str, data: bytes, code: str
) -> None:
    project = project_with(tmp_path, {name: data, "good.py": GOOD})
    result = run(project, project.plan.work_phases, dry_run=False, workers=1, cache=False)
    assert [(o.result.path, o.result.error) for o in result.errors] == [(name, code)]
    assert (tmp_path / name).read_bytes() == data
    assert b"db_utils.sqlite.connect" in (tmp_path / "good.py").read_bytes()


def test_a_file_over_the_size_limit_is_not_parsed(tmp_path: Path) -> None:
    big = GOOD + b"x = 1\n" * 2000
    project = project_with(tmp_path, {"big.py": big, "good.py": GOOD})
    limits = Limits(max_bytes=4096)
    result = run(project, project.plan.work_phases, dry_run=False, workers=1, cache=False, limits=limits)
    assert [(o.result.path, o.result.error) for o in result.errors] == [("big.py", "file-too-large")]
    assert (tmp_path / "big.py").read_bytes() == big
    assert result.files_parsed == 1  # only good.py reached LibCST


def test_a_file_over_the_time_limit_is_stopped_and_the_run_goes_on(tmp_path: Path) -> None:
    slow = b"spin()\n"
    project = project_with(tmp_path, {"slow.py": slow, "good.py": GOOD}, ToySqliteRule, SpinningRule)
    # The spinning file never finishes, whatever the limit; the limit is generous so that good.py, on a
    # loaded machine, never comes near it.
    limits = Limits(time_s=15.0)
    result = run(project, project.plan.work_phases, dry_run=False, workers=1, cache=False, limits=limits)
    assert [(o.result.path, o.result.error) for o in result.errors] == [("slow.py", "timeout")]
    assert (tmp_path / "slow.py").read_bytes() == slow
    assert b"db_utils.sqlite.connect" in (tmp_path / "good.py").read_bytes()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_recursion_error_is_that_file_s_error(tmp_path: Path, workers: int) -> None:
    deep = b"deep = 1\n" + b"y = 2\n" * 8000  # big enough for the worker pool to be used with -j 2
    project = project_with(tmp_path, {"deep.py": deep, "good.py": GOOD}, ToySqliteRule, RecursingRule)
    result = run(project, project.plan.work_phases, dry_run=False, workers=workers, cache=False)
    assert [(o.result.path, o.result.error) for o in result.errors] == [("deep.py", "rule-crashed")]
    assert (tmp_path / "deep.py").read_bytes() == deep
    assert b"db_utils.sqlite.connect" in (tmp_path / "good.py").read_bytes()


def test_the_exit_code_tells_a_crash_from_files_left_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "good.py").write_bytes(GOOD)
    (tmp_path / "bad.py").write_bytes(nested_calls(300))
    assert main(["migrate", str(tmp_path), "--no-cache", "-q", "-j", "1"]) == EXIT_REMAINING
    report = capsys.readouterr().out
    assert "bad.py: error [syntax-error]" in report
    assert "db_utils.sqlite.connect" in (tmp_path / "good.py").read_text()


def test_a_crash_gets_exit_3_and_the_report_still_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real rule crashing on a real file: PS201's analysis raises on this one (a poolshift bug stand-in).
    from codemods.rules import sqlite3_connect

    def explode(self: object, call: cst.Call) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(sqlite3_connect.Sqlite3ConnectRule, "check_call", explode)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "good.py").write_bytes(b"import urllib.request\nurllib.request.urlopen('http://x')\n")
    (tmp_path / "crash.py").write_bytes(GOOD)
    assert main(["migrate", str(tmp_path), "--no-cache", "-q", "-j", "1"]) == EXIT_CRASH
    assert "crash.py: error [rule-crashed]" in capsys.readouterr().out
    assert (tmp_path / "crash.py").read_bytes() == GOOD
    assert "db_utils.http.urlopen" in (tmp_path / "good.py").read_text()


def test_the_command_line_s_timeout_is_the_limit_per_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # LibCST cannot parse and analyse 300 lines in a millisecond, on any machine.
    slow = GOOD + b"".join(b"value_%d = compute(%d)\n" % (i, i) for i in range(300))
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "slow.py").write_bytes(slow)
    arguments = ["migrate", str(tmp_path), "--no-cache", "-q", "-j", "1", "--select", "PS201"]
    assert main([*arguments, "--timeout", "0.001"]) == EXIT_REMAINING
    assert "slow.py: error [timeout]" in capsys.readouterr().out
    assert (tmp_path / "slow.py").read_bytes() == slow
    assert main([*arguments, "--timeout", "0"]) == 0  # no limit (a loaded machine may be very slow)
    assert b"db_utils.sqlite.connect" in (tmp_path / "slow.py").read_bytes()


def test_the_time_limit_counts_cpu_time_not_wall_time() -> None:
    """A machine busy with other jobs must not make an ordinary file time out: waiting costs no budget,
    work does (a wall-clock limit refused a 7.5 s-CPU file after 79 s on a loaded machine)."""
    import time

    from codemods.limits import FileTimeout, time_limit

    with time_limit(0.2):
        time.sleep(0.5)  # off the CPU: far past the limit in wall time, nowhere near it in CPU time

    def spin() -> None:
        with time_limit(0.2):
            while True:  # on the CPU: stopped once it has used 0.2 s of it, however long that takes
                pass

    with pytest.raises(FileTimeout):
        spin()
