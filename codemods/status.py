"""``poolshift status``: how far each phase is, measured on the code itself, rendered through the report.

The code does not remember what poolshift rewrote, so progress is counted on the tree: calls that resolve
to the ``db_utils`` API are migrated sites, whoever wrote them; migratable, reported and suppressed sites
come from a dry run of the rules, counted once per call site as the report lists them (the handling rule's
verdict). The tables use :mod:`codemods.report`'s formats, with a ``total`` row.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields, replace
from typing import Any

from codemods.first_pass import binding_resolver, parse_text
from codemods.project import Project
from codemods.report import markdown_table, records, text_table
from codemods.rules.base import dotted_name
from codemods.runner import UNASSIGNED, RunResult
from codemods.transform import SourceError, decode_source

__all__ = [
    "POOLED_API",
    "PhaseStatus",
    "count_pooled_calls",
    "labelled",
    "phase_statuses",
    "render_status",
    "total_status",
]

SCHEMA_VERSION = 1
#: The calls the rules rewrite to; a call of one of these counts as a migrated site.
POOLED_API = frozenset(
    {
        "db_utils.postgres.connect",
        "db_utils.sqlite.connect",
        "db_utils.http.urlopen",
        "db_utils.get_pooled_connection",
        "db_utils.execute_with_pool",
        "db_utils.execute_with_pool_connection",
        "db_utils.get_postgres_connection",
    }
)
FOOTNOTE = (
    "migrated = calls already on db_utils; remaining = migratable sites; "
    "suppressed = kept by a `# poolshift: ignore` comment\n"
)
TOTAL = "total"


@dataclass(frozen=True)
class PhaseStatus:
    """One row of the status table (the field order is the column order)."""

    phase: str
    migrated: int
    remaining: int
    reported: int
    suppressed: int
    errors: int
    state: str


def count_pooled_calls(project: Project) -> dict[str, int]:
    """Per phase name, the number of calls already going through ``db_utils`` (the "migrated" column).

    Counted on CPython's own tree (``ast``): every file that compiles is counted, however deep it nests
    (LibCST's parser refuses some of those), and the files are read through the project's file store, so
    a warm read-only run answers "no ``db_utils`` here" from the recorded stat facts without reading.
    """
    counts: dict[str, int] = {}
    for path in project.target_files:
        if not project.files.contains(path, _POOLED_WORDS):
            continue
        data = project.files.read(path)
        try:
            text = decode_source(data).text if data is not None else None
        except (SourceError, ValueError):
            text = None
        tree = parse_text(text) if text is not None else "unreadable"
        if isinstance(tree, str):
            continue  # the dry run reports the file (syntax-error, undecodable, ...)
        resolve, _ = binding_resolver(tree, text or "", project.module_of(path)[1], {})
        found = sum(
            1
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and (callee := dotted_name(node.func)) is not None
            and not resolve(callee).isdisjoint(POOLED_API)
        )
        phase = project.plan.phase_of(path)
        name = phase.name if phase is not None else UNASSIGNED
        counts[name] = counts.get(name, 0) + found
    return counts


_POOLED_WORDS = (b"db_utils",)


def phase_statuses(project: Project, result: RunResult) -> list[PhaseStatus]:
    """One row per phase (plus ``unassigned`` when files are in no phase) from a dry run's ``result``."""
    pooled = count_pooled_calls(project)
    names = [phase.name for phase in project.plan.phases]
    if project.unassigned_files() and len(project.plan.work_phases) > 0:
        names.append(UNASSIGNED)
    return [_phase_status(project, result, name, pooled.get(name, 0)) for name in names]


def _phase_status(project: Project, result: RunResult, name: str, migrated: int) -> PhaseStatus:
    sites = [record.site for record in records(site for site in result.sites if site.phase == name)]
    remaining = sum(site.status == "migratable" for site in sites)
    reported = sum(site.status == "reported" for site in sites)
    suppressed = sum(site.status == "suppressed" for site in sites)
    errors = sum(1 for outcome in result.errors if outcome.phase == name)
    if name == project.plan.cleanup.name and reported:
        state = "blocked"  # the cleanup lists what still uses the legacy helper
    elif remaining == 0 and errors == 0:
        state = "done"
    else:
        state = "in progress" if migrated else "not started"
    return PhaseStatus(name, migrated, remaining, reported, suppressed, errors, state)


def labelled(rows: Sequence[PhaseStatus], project: str) -> list[PhaseStatus]:
    """``rows`` named ``<project>:<phase>``: one table for the projects of several configurations."""
    return [replace(row, phase=f"{project}:{row.phase}") for row in rows]


def total_status(rows: Sequence[PhaseStatus]) -> PhaseStatus:
    """The sum of every phase: ``done`` only when every phase is."""
    migrated, remaining, reported, suppressed, errors = (
        sum(getattr(row, column) for row in rows)
        for column in ("migrated", "remaining", "reported", "suppressed", "errors")
    )
    if all(row.state == "done" for row in rows):
        state = "done"
    else:
        state = "in progress" if migrated else "not started"
    return PhaseStatus(TOTAL, migrated, remaining, reported, suppressed, errors, state)


def render_status(rows: Sequence[PhaseStatus], fmt: str) -> str:
    """The status table as ``text``, ``json`` or ``markdown`` (the report's formats), with its total."""
    columns = [field.name for field in fields(PhaseStatus)]
    total = total_status(rows)
    values = [astuple(row) for row in [*rows, total]]
    if fmt == "json":
        phases: list[dict[str, Any]] = [dict(zip(columns, astuple(row), strict=True)) for row in rows]
        document = {
            "version": SCHEMA_VERSION,
            "phases": phases,
            "total": dict(zip(columns, astuple(total), strict=True)),
        }
        return json.dumps(document, indent=2) + "\n"
    if fmt == "markdown":
        return "\n".join(markdown_table([column.capitalize() for column in columns], values)) + "\n"
    return "\n".join(text_table(columns, values)) + "\n" + FOOTNOTE
