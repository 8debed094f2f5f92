"""The per-site report (text, JSON, markdown), its tables, and the unified diff of ``migrate --diff``.

Every candidate appears with its rule, position, phase and status; a site left alone always carries its
reason code, and a file left alone appears under errors with its code. The JSON schema is versioned and
only ever grows: tools may rely on ``version``, ``sites``, ``totals`` and ``errors``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from codemods.rules.base import Site
from codemods.transform import ERROR_CODES

__all__ = ["FileError", "Report", "markdown_table", "render", "text_table", "unified_diff"]

SCHEMA_VERSION = 1
FORMATS = ("text", "json", "markdown")


@dataclass(frozen=True)
class FileError:
    path: str
    error: str
    detail: str
    phase: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.error, "detail": self.detail, "phase": self.phase}


@dataclass
class Report:
    sites: list[Site]
    errors: list[FileError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    title: str = "poolshift"
    #: What the user should know about the run as a whole (scan: one line per legacy helper).
    notes: list[str] = field(default_factory=list)

    def sorted_sites(self) -> list[Site]:
        return sorted(self.sites, key=lambda s: (s.path, s.line, s.column, s.rule))

    def totals(self) -> dict[str, dict[str, int]]:
        return {
            "by_rule": dict(sorted(Counter(site.rule for site in self.sites).items())),
            "by_phase": dict(Counter(site.phase or "-" for site in self.sites)),
            "by_status": dict(sorted(Counter(site.status for site in self.sites).items())),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "sites": [site.to_dict() for site in self.sorted_sites()],
            "totals": self.totals(),
            "errors": [error.to_dict() for error in sorted(self.errors, key=lambda e: e.path)],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def _status(site: Site) -> str:
    return f"{site.status}: {site.reason}" if site.reason else site.status


def _text(report: Report) -> str:
    lines = [f"warning: {warning}" for warning in report.warnings]
    lines.extend(f"note: {note}" for note in report.notes)
    for site in report.sorted_sites():
        message = f" {site.message}" if site.message else ""
        lines.append(f"{site.path}:{site.line}:{site.column}: {site.rule} [{_status(site)}]{message}")
    for error in sorted(report.errors, key=lambda e: e.path):
        advice = ERROR_CODES.get(error.error, "")
        lines.append(
            f"{error.path}: error [{error.error}] {error.detail}" + (f" ({advice})" if advice else "")
        )
    totals = report.totals()
    summary = ", ".join(f"{count} {status}" for status, count in totals["by_status"].items()) or "no sites"
    lines.append(f"Found {len(report.sites)} site(s): {summary}; {len(report.errors)} file error(s).")
    if totals["by_rule"]:
        lines.append("By rule: " + ", ".join(f"{rule} {count}" for rule, count in totals["by_rule"].items()))
    if totals["by_phase"]:
        lines.append("By phase: " + ", ".join(f"{phase} {n}" for phase, n in totals["by_phase"].items()))
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A GitHub-flavoured markdown table, one line per row; cells cannot break out of their column."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines.extend("| " + " | ".join(_cell(value) for value in row) + " |" for row in rows)
    return lines


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A plain-text table for a terminal: upper-case headers, every column as wide as its widest cell."""
    cells = [[header.upper() for header in headers], *[[str(value) for value in row] for row in rows]]
    widths = [max(len(line[column]) for line in cells) for column in range(len(headers))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]


def _markdown(report: Report) -> str:
    lines = [f"# {report.title} report", ""]
    if report.warnings:
        lines.extend(f"> **Warning:** {_cell(warning)}" for warning in report.warnings)
        lines.append("")
    if report.notes:
        lines.extend(f"* {_cell(note)}" for note in report.notes)
        lines.append("")
    totals = report.totals()
    for heading, key in (("By rule", "by_rule"), ("By phase", "by_phase"), ("By status", "by_status")):
        lines.extend([f"## {heading}", ""])
        lines.extend(markdown_table([heading.split()[-1].capitalize(), "Sites"], totals[key].items()))
        lines.append("")
    lines.extend(["## Sites", ""])
    rows = [
        (f"`{s.path}:{s.line}:{s.column}`", s.rule, s.phase or "-", s.status, s.reason or "", s.message)
        for s in report.sorted_sites()
    ]
    lines.extend(markdown_table(["Location", "Rule", "Phase", "Status", "Reason", "Message"], rows))
    if report.errors:
        lines.extend(["", "## Files left untouched", ""])
        rows_e = [(f"`{e.path}`", e.error, e.detail) for e in sorted(report.errors, key=lambda e: e.path)]
        lines.extend(markdown_table(["File", "Error", "Detail"], rows_e))
    return "\n".join(lines) + "\n"


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2) + "\n"
    if fmt == "markdown":
        return _markdown(report)
    if fmt == "text":
        return _text(report)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


_LINES = re.compile(rb"[^\n]*\n|[^\n]+")


def _lines(data: bytes) -> list[bytes]:
    """Split after each "\\n" only: CRLF lines keep their "\\r", as git expects in a patch."""
    return _LINES.findall(data)


def unified_diff(path: str, before: bytes, after: bytes) -> bytes:
    """A unified diff of one file that ``git apply`` (and ``patch -p1``) accepts.

    Works on bytes so any source encoding round-trips exactly; a last line without a newline gets git's
    "\\ No newline at end of file" marker, which difflib does not emit on its own.
    """
    name = path.encode("utf-8", "surrogateescape")
    diff = difflib.diff_bytes(
        difflib.unified_diff, _lines(before), _lines(after), b"a/" + name, b"b/" + name, lineterm=b"\n"
    )
    out: list[bytes] = []
    for line in diff:
        out.append(line)
        if not line.endswith(b"\n"):
            out.append(b"\n\\ No newline at end of file\n")
    return b"".join(out)
