"""The per-site report (text, JSON, markdown), its tables, and the unified diff of ``migrate --diff``.

Every call site appears once, with the rule that handles it (the one that rewrites it, or else the first
that reports it), its position, phase and status, and the other rules' verdicts on the same call as
``alternatives``; a site left alone always carries its reason code, and a file left alone appears under
errors with its code. A message that several sites share (a helper's differences from the shim) is
printed once, as a numbered note the sites point to. The JSON schema is versioned; tools may rely on
``version``, ``sites``, ``totals`` and ``errors`` (version 2: one record per call site, with
``alternatives``).
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from codemods.rules.base import Site
from codemods.transform import ERROR_CODES

__all__ = ["FileError", "Report", "combine", "markdown_table", "render", "text_table", "unified_diff"]

SCHEMA_VERSION = 2
FORMATS = ("text", "json", "markdown")
#: A rule that rewrites a site handles it; otherwise the first rule that has a verdict on it.
_HANDLING_ORDER = {"migrated": 0, "migratable": 0, "suppressed": 1, "reported": 2}


@dataclass(frozen=True)
class Record:
    """One call site: the handling rule's verdict, and the other rules' verdicts on the same call.

    ``details`` holds every message when the handling rule recorded the site several times (the cleanup
    records one per remaining reference); the site's own message then summarises them.
    """

    site: Site
    alternatives: tuple[Site, ...] = ()
    details: tuple[str, ...] = ()
    #: ``details`` of each alternative (same order), for a rule that recorded the site several times.
    alternative_details: tuple[tuple[str, ...], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        details = self.alternative_details or tuple(() for _ in self.alternatives)
        alternatives = [
            {"rule": s.rule, "status": s.status, "reason": s.reason, "message": s.message, "details": list(d)}
            for s, d in zip(self.alternatives, details, strict=True)
        ]
        return {**self.site.to_dict(), "alternatives": alternatives, "details": list(self.details)}


#: How many of a merged site's messages the summary shows (``details`` in the JSON has them all).
SHOWN_DETAILS = 3


def _merge_same_rule(sites: Sequence[Site]) -> tuple[Site, tuple[str, ...]]:
    """One rule's several records at one position as one site, and all their messages."""
    first = sites[0]
    messages = tuple(dict.fromkeys(site.message for site in sites if site.message))
    if len(messages) <= 1:
        return first, ()
    shown = "; ".join(messages[:SHOWN_DETAILS])
    more = len(messages) - SHOWN_DETAILS
    summary = f"{len(messages)} places: {shown}" + (f"; and {more} more (JSON lists all)" if more > 0 else "")
    return replace(first, message=summary), messages


def records(sites: Iterable[Site]) -> list[Record]:
    """The sites grouped per call site (path, line, column), sorted by position."""
    by_position: dict[tuple[str, int, int], dict[str, list[Site]]] = {}
    for site in sites:
        by_position.setdefault((site.path, site.line, site.column), {}).setdefault(site.rule, []).append(site)
    found: list[Record] = []
    for position in sorted(by_position):
        merged = [_merge_same_rule(group) for group in by_position[position].values()]
        merged.sort(key=lambda pair: (_HANDLING_ORDER.get(pair[0].status, 3), pair[0].rule))
        (site, details), others = merged[0], merged[1:]
        found.append(Record(site, tuple(other for other, _ in others), details, tuple(d for _, d in others)))
    return found


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

    def records(self) -> list[Record]:
        return records(self.sites)

    def sorted_sites(self) -> list[Site]:
        """One site per call site (the handling rule's), sorted by position."""
        return [record.site for record in self.records()]

    def totals(self) -> dict[str, dict[str, int]]:
        sites = self.sorted_sites()
        return {
            "by_rule": dict(sorted(Counter(site.rule for site in sites).items())),
            "by_phase": dict(Counter(site.phase or "-" for site in sites)),
            "by_status": dict(sorted(Counter(site.status for site in sites).items())),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "sites": [record.to_dict() for record in self.records()],
            "totals": self.totals(),
            "errors": [error.to_dict() for error in sorted(self.errors, key=lambda e: e.path)],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def combine(parts: Sequence[tuple[str, Report]], title: str) -> Report:
    """One report of several runs (one per configuration): each run's paths get its prefix (where its
    project root is), and its warnings and notes say which run they are about; one run is left as is."""
    if len(parts) == 1:
        return replace(parts[0][1], title=title)

    def about(prefix: str, text: str) -> str:
        return f"{prefix.rstrip('/') or '.'}: {text}"

    return Report(
        sites=[replace(site, path=prefix + site.path) for prefix, report in parts for site in report.sites],
        errors=[
            replace(error, path=prefix + error.path) for prefix, report in parts for error in report.errors
        ],
        warnings=[about(prefix, warning) for prefix, report in parts for warning in report.warnings],
        title=title,
        notes=[about(prefix, note) for prefix, report in parts for note in report.notes],
    )


def _status(site: Site) -> str:
    return f"{site.status}: {site.reason}" if site.reason else site.status


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Notes:
    """Messages several sites share, numbered in order of first use and printed once."""

    def __init__(self, sites: Sequence[Site]) -> None:
        counts = Counter(site.message for site in sites if site.message)
        self.shared = {message for message, count in counts.items() if count > 1}
        self.numbers: dict[str, int] = {}

    def refer(self, message: str) -> str:
        if message not in self.shared:
            return _one_line(message)
        number = self.numbers.setdefault(message, len(self.numbers) + 1)
        return f"(note {number})"

    def lines(self) -> list[str]:
        return [f"note {n}: {_one_line(message)}" for message, n in self.numbers.items()]


def _also(record: Record) -> str:
    """The other rules' verdicts on the site, in one cell or parenthesis."""
    return ", ".join(f"{s.rule} {_status(s)}" for s in record.alternatives)


def _text(report: Report, *, verbose: bool = False) -> str:
    lines = [f"warning: {warning}" for warning in report.warnings]
    lines.extend(f"note: {note}" for note in report.notes)
    records_ = report.records()
    notes = _Notes([record.site for record in records_])
    for record in records_:
        site = record.site
        message = f" {notes.refer(site.message)}" if site.message else ""
        lines.append(
            f"{site.path}:{site.line}:{site.column}: {site.rule} [{_status(site)}]{message}"
            + (f" (also: {_also(record)})" if record.alternatives else "")
        )
        if verbose:
            lines.extend(f"    {_one_line(detail)}" for detail in record.details)
            for other, details in zip(record.alternatives, record.alternative_details, strict=True):
                lines.extend(f"    {other.rule}: {_one_line(detail)}" for detail in details)
    lines.extend(notes.lines())
    for error in sorted(report.errors, key=lambda e: e.path):
        advice = ERROR_CODES.get(error.error, "")
        lines.append(
            f"{error.path}: error [{error.error}] {_one_line(error.detail)}"
            + (f" ({advice})" if advice else "")
        )
    totals = report.totals()
    summary = ", ".join(f"{count} {status}" for status, count in totals["by_status"].items()) or "no sites"
    lines.append(f"Found {len(records_)} site(s): {summary}; {len(report.errors)} file error(s).")
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
    records_ = report.records()
    notes = _Notes([record.site for record in records_])
    rows = [
        (
            f"`{s.path}:{s.line}:{s.column}`", s.rule, s.phase or "-", s.status, s.reason or "",
            notes.refer(s.message), _also(record),
        )
        for record in records_
        for s in [record.site]
    ]  # fmt: skip
    headers = ["Location", "Rule", "Phase", "Status", "Reason", "Message", "Also"]
    lines.extend(markdown_table(headers, rows))
    if notes.numbers:
        lines.extend(["", "## Notes", ""])
        lines.extend(f"{n}. {_cell(_one_line(message))}" for message, n in notes.numbers.items())
    if report.errors:
        lines.extend(["", "## Files left untouched", ""])
        rows_e = [(f"`{e.path}`", e.error, e.detail) for e in sorted(report.errors, key=lambda e: e.path)]
        lines.extend(markdown_table(["File", "Error", "Detail"], rows_e))
    return "\n".join(lines) + "\n"


def render(report: Report, fmt: str, *, verbose: bool = False) -> str:
    """The report as ``text`` (``verbose``: every place of a merged site), ``json`` or ``markdown``."""
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2) + "\n"
    if fmt == "markdown":
        return _markdown(report)
    if fmt == "text":
        return _text(report, verbose=verbose)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


_LINES = re.compile(rb"[^\n]*\n|[^\n]+")


def _lines(data: bytes) -> list[bytes]:
    """Split after each "\\n" only: CRLF lines keep their "\\r", as git expects in a patch."""
    return _LINES.findall(data)


def unified_diff(path: str, before: bytes, after: bytes) -> bytes:
    """A unified diff of one file, with git's ``diff --git`` header, that ``git apply`` accepts.

    Works on bytes so any source encoding round-trips exactly; a last line without a newline gets git's
    "\\ No newline at end of file" marker, which difflib does not emit on its own.
    """
    name = path.encode("utf-8", "surrogateescape")
    if before == after:
        return b""
    diff = difflib.diff_bytes(
        difflib.unified_diff, _lines(before), _lines(after), b"a/" + name, b"b/" + name, lineterm=b"\n"
    )
    out: list[bytes] = [b"diff --git a/" + name + b" b/" + name + b"\n"]
    for line in diff:
        out.append(line)
        if not line.endswith(b"\n"):
            out.append(b"\n\\ No newline at end of file\n")
    return b"".join(out)
