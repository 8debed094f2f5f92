"""Runner pieces that the CLI tests do not pin down: atomic writes, module names, idempotence guard."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import ClassVar

import libcst as cst
import pytest

from codemods.project import load_project, module_and_package
from codemods.rules.base import PoolshiftRule, RuleOptions
from codemods.runner import _Job, _transform_job, atomic_write, phases_for_migrate, run
from tests.codemods.toy_rules import ToySqliteRule


class GrowingRule(PoolshiftRule):
    """Appends to every string literal: a second run changes the output again (a rule bug)."""

    RULE_ID = "PS994"
    PREFILTER: ClassVar[tuple[str, ...]] = ("grow",)

    def leave_SimpleString(
        self, original_node: cst.SimpleString, updated_node: cst.SimpleString
    ) -> cst.SimpleString:
        self.record(original_node, "migrated")
        return updated_node.with_changes(value=updated_node.value[:-1] + "+" + updated_node.value[-1])


def job(data: bytes, rule: type[PoolshiftRule], verify: bool = True) -> _Job:
    return _Job("m.py", data, (rule,), RuleOptions(), False, "m", "", verify)


def test_non_idempotent_rewrite_is_refused() -> None:
    result = _transform_job(job(b"grow = 'x'\n", GrowingRule))
    assert (result.output, result.error, result.sites) == (None, "not-idempotent", [])


def test_idempotent_rewrite_passes_the_guard() -> None:
    result = _transform_job(job(b"import sqlite3\nsqlite3.connect('a')\n", ToySqliteRule))
    assert result.error is None
    assert result.output is not None


def test_atomic_write_keeps_mode_and_refuses_a_file_changed_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "m.py"
    target.write_bytes(b"old\n")
    target.chmod(0o604)
    atomic_write(target, b"new\n", b"old\n")
    assert target.read_bytes() == b"new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o604
    with pytest.raises(OSError, match="changed on disk"):
        atomic_write(target, b"newer\n", b"old\n")
    assert target.read_bytes() == b"new\n"
    assert os.listdir(tmp_path) == ["m.py"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("app/db.py", ("app.db", "app")),
        ("app/__init__.py", ("app", "app")),
        ("app/api/__main__.py", ("app.api", "app.api")),
        ("top.py", ("top", "")),
        ("src/pkg/m.py", ("pkg.m", "pkg")),
    ],
)
def test_module_names(tmp_path: Path, path: str, expected: tuple[str, str]) -> None:
    assert module_and_package(tmp_path, path) == expected


def test_dry_run_writes_nothing_and_reports_migratable(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    source = b"import sqlite3\nsqlite3.connect('a.db')\n"
    (tmp_path / "m.py").write_bytes(source)
    project = load_project([tmp_path], select=["PS201"])
    dry = run(project, project.plan.phases, dry_run=True, workers=1)
    assert (tmp_path / "m.py").read_bytes() == source
    assert [(s.status, s.phase) for s in dry.sites] == [("migratable", "all")]
    assert dry.finals["m.py"] != source
    wet = run(project, project.plan.phases, dry_run=False, workers=1)
    assert [s.status for s in wet.sites] == ["migrated"]
    assert (tmp_path / "m.py").read_bytes() == dry.finals["m.py"]
    assert [o.written for o in wet.outcomes] == [True]


class LastReportRule(PoolshiftRule):
    """A cleanup-phase rule that reports ``report_me()`` calls: it sees the earlier phases' output."""

    RULE_ID = "PS996"
    RUNS_LAST = True
    PREFILTER: ClassVar[tuple[str, ...]] = ("report_me",)
    REASON_CODES: ClassVar[dict[str, str]] = {"seen": "a report_me() call"}

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name) and node.func.value == "report_me":
            self.record(node, "reported", "seen")


@pytest.mark.parametrize("dry_run", [True, False])
def test_cleanup_sites_point_into_the_file_as_it_was_before_the_run(tmp_path: Path, dry_run: bool) -> None:
    # Phase "all" adds an import above report_me(); the cleanup phase runs on that output (chained), but
    # its site must still name the line in the user's file as it was when the run started.
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    source = b"import sqlite3\n\nconn = sqlite3.connect('a.db')\nreport_me()\n"
    (tmp_path / "m.py").write_bytes(source)
    project = dataclasses.replace(load_project([tmp_path]), rules=(ToySqliteRule, LastReportRule))
    result = run(project, phases_for_migrate(project.plan, None), dry_run=dry_run, chain=True, workers=1)
    assert b"import db_utils.sqlite" in result.finals["m.py"]
    assert [(s.rule, s.line, s.column, s.phase) for s in result.sites] == [
        ("PS990", 3, 8, "all"),
        ("PS996", 4, 1, "cleanup"),
    ]


def test_files_naming_a_legacy_helper_reach_the_rules_that_declare_it(tmp_path: Path) -> None:
    # The helper has a name of its own: no file says "get_postgres_connection". PS102 declares
    # LEGACY_HELPER_PREFILTER, so the runner prefilters on "get_conn" too; the sqlite rule does not.
    (tmp_path / "pyproject.toml").write_text('[tool.poolshift]\nlegacy_helpers = ["app.db.get_conn"]\n')
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "users.py").write_text("from app.db import get_conn\n\nconn = get_conn()\n")
    project = load_project([tmp_path], select=["PS102", "PS201"])
    result = run(project, project.plan.work_phases, dry_run=True, workers=1)
    # (app/db.py does not exist: the helper cannot be shown equivalent, which is reported.)
    assert [(s.rule, s.path, s.reason) for s in result.sites] == [("PS102", "app/users.py", "unknown-helper")]
    assert result.files_parsed == 1


def test_progress_shows_files_and_sites_on_a_terminal_only() -> None:
    import io

    from codemods.runner import _Progress

    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as terminal:
        progress = _Progress(3, terminal)
        progress.started -= 2.0  # a run that has lasted over a second
        progress.advance(1, 2)
        progress.advance(2, 1)
        progress.finish()
    # Read until the terminal is drained: one read() may return only the first write.
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 1024)
        except OSError:  # EIO: the follower side is closed and everything has been read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    shown = b"".join(chunks).decode()
    assert "poolshift: 3/3 files, 3 sites" in shown
    piped = io.StringIO()
    quiet = _Progress(3, piped)
    quiet.started -= 2.0
    quiet.advance(3, 3)
    quiet.finish()
    assert piped.getvalue() == ""


def _method_project(root: Path, *, psycopg2_elsewhere: bool, suppressed: bool = False) -> Path:
    (root / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    (root / "app").mkdir()
    (root / "app" / "__init__.py").write_text("")
    comment = "  # poolshift: ignore[PS103]" if suppressed else ""
    (root / "app" / "mail.py").write_text(
        f"def render(message, policy):\n    return message.as_string(policy){comment}\n"
    )
    if psycopg2_elsewhere:
        (root / "app" / "db.py").write_text("import psycopg2\n")
    return root


@pytest.mark.parametrize("psycopg2_elsewhere", [False, True], ids=["no-psycopg2", "psycopg2-elsewhere"])
def test_ps103_method_words_send_a_file_to_the_first_pass_only_where_psycopg2_is_imported(
    tmp_path: Path, psycopg2_elsewhere: bool
) -> None:
    """``.as_string(x)`` concerns PS103 only in a project that imports psycopg2 somewhere; elsewhere its
    words (as_string, prepare) are nobody's and the file is neither parsed by ``ast`` nor by LibCST."""
    project = load_project([_method_project(tmp_path, psycopg2_elsewhere=psycopg2_elsewhere)], cache=False)
    result = run(project, project.plan.phases, dry_run=True, chain=False, workers=1, cache=False)
    sites = [(site.rule, site.path, site.reason) for site in result.sites]
    if psycopg2_elsewhere:
        assert sites == [("PS103", "app/mail.py", "receiver-unknown")]
    else:
        assert sites == []
        # app/__init__.py and app/mail.py hold no target's word; nothing reaches either pass.
        assert (result.files_first_pass, result.files_parsed) == (0, 0)


def test_a_ps103_suppression_is_still_judged_where_the_rule_does_not_apply(tmp_path: Path) -> None:
    """The suppression comment names PS103, so PS103 runs on the file and reports the comment unused."""
    project = load_project(
        [_method_project(tmp_path, psycopg2_elsewhere=False, suppressed=True)], cache=False
    )
    result = run(project, project.plan.phases, dry_run=True, chain=False, workers=1, cache=False)
    assert [(site.rule, site.path, site.reason) for site in result.sites] == [
        ("PS000", "app/mail.py", "unused-suppression")
    ]
