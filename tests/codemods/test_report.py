"""Report formats and the git-applicable diff."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from codemods.report import FileError, Report, render, unified_diff
from codemods.rules.base import Site

SITES = [
    Site("PS201", "b.py", 3, 5, "migratable", phase="rest"),
    Site("PS201", "a.py", 9, 1, "reported", "memory-database", "in-memory | never pooled", phase="api"),
    Site("PS301", "a.py", 2, 7, "migrated", phase="api"),
]
REPORT = Report(SITES, [FileError("c.py", "syntax-error", "line 1:4: bad", "rest")], ["careful"])


def test_json_schema_is_stable() -> None:
    data = json.loads(render(REPORT, "json"))
    assert set(data) == {"version", "sites", "totals", "errors", "warnings", "notes"}
    assert data["version"] == 2
    assert [(s["path"], s["line"]) for s in data["sites"]] == [("a.py", 2), ("a.py", 9), ("b.py", 3)]
    assert set(data["sites"][0]) == {
        "rule",
        "path",
        "line",
        "column",
        "status",
        "reason",
        "message",
        "phase",
        "alternatives",
        "details",
    }
    assert data["totals"] == {
        "by_rule": {"PS201": 2, "PS301": 1},
        "by_phase": {"rest": 1, "api": 2},
        "by_status": {"migratable": 1, "migrated": 1, "reported": 1},
    }
    assert data["errors"] == [
        {"path": "c.py", "error": "syntax-error", "detail": "line 1:4: bad", "phase": "rest"}
    ]


def test_text_is_ruff_like_and_every_reported_site_has_its_reason() -> None:
    lines = render(REPORT, "text").splitlines()
    assert lines[0] == "warning: careful"
    assert "a.py:9:1: PS201 [reported: memory-database] in-memory | never pooled" in lines
    assert "b.py:3:5: PS201 [migratable]" in lines
    assert any(
        line.startswith("c.py: error [syntax-error] line 1:4: bad (the file does not parse") for line in lines
    )
    assert "Found 3 site(s): 1 migratable, 1 migrated, 1 reported; 1 file error(s)." in lines


def test_markdown_tables_escape_pipes() -> None:
    text = render(REPORT, "markdown")
    assert "| `a.py:9:1` | PS201 | api | reported | memory-database | in-memory \\| never pooled |  |" in text
    assert "## Files left untouched" in text
    assert "> **Warning:** careful" in text


def test_unknown_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        render(REPORT, "xml")


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"a\nb\nc\n", b"a\nB\nc\n"),
        (b"a\r\nb\r\n", b"a\r\nB\r\nnew\r\n"),
        (b"a\nb", b"a\nB"),  # no newline at the end, on both sides
        (b"a\nb", b"a\nb\n"),  # newline added at the end
        (b"# coding: latin-1\nx = '\xe9'\n", b"# coding: latin-1\nx = '\xe9'\ny = 1\n"),
    ],
    ids=["lf", "crlf", "no-eol", "eol-added", "latin-1"],
)
def test_diff_applies_with_git_apply(tmp_path: Path, before: bytes, after: bytes) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "pkg").mkdir()
    target = tmp_path / "pkg" / "m.py"
    target.write_bytes(before)
    patch = unified_diff("pkg/m.py", before, after)
    assert patch.startswith(b"diff --git a/pkg/m.py b/pkg/m.py\n--- a/pkg/m.py\n+++ b/pkg/m.py\n")
    subprocess.run(["git", "-C", str(tmp_path), "apply", "-"], input=patch, check=True)
    assert target.read_bytes() == after


def test_one_record_per_call_site_with_the_other_rules_verdicts_and_shared_messages_once() -> None:
    differs = "get_conn differs from the shim: sets search_path; autocommit on; a 400-character story"
    sites = [
        Site("PS101", "a.py", 3, 5, "reported", "custom-factory", differs),
        Site("PS102", "a.py", 3, 5, "reported", "custom-factory", differs),
        Site("PS101", "a.py", 5, 5, "reported", "custom-factory", differs),
        Site("PS101", "a.py", 8, 5, "reported", "not-seed-pattern", "not the shape"),
        Site("PS102", "a.py", 8, 5, "migratable"),
        *[Site("PS901", "db.py", 1, 1, "reported", "helper-still-referenced", f"x.py:{n}") for n in range(5)],
    ]
    report = Report(sites)
    data = report.to_dict()
    assert [(s["path"], s["line"], s["rule"]) for s in data["sites"]] == [
        ("a.py", 3, "PS101"), ("a.py", 5, "PS101"), ("a.py", 8, "PS102"), ("db.py", 1, "PS901")
    ]  # fmt: skip
    assert [a["rule"] for a in data["sites"][2]["alternatives"]] == ["PS101"]
    assert data["sites"][3]["details"] == [f"x.py:{n}" for n in range(5)]
    assert data["sites"][3]["message"] == "5 places: x.py:0; x.py:1; x.py:2; and 2 more (JSON lists all)"
    assert data["totals"]["by_status"] == {"migratable": 1, "reported": 3}
    text = render(report, "text")
    assert text.count("sets search_path") == 1
    assert (
        "a.py:3:5: PS101 [reported: custom-factory] (note 1) (also: PS102 reported: custom-factory)" in text
    )
    assert f"note 1: {differs}" in text
    assert "a.py:8:5: PS102 [migratable] (also: PS101 reported: not-seed-pattern)" in text
