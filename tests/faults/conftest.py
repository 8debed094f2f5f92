"""The fault scenarios' shared table: each scenario records one row, printed at the end of the run.

Columns: calls made, successes, errors, acknowledged-but-missing writes, the slowest call against the
scenario's bound, and connections still checked out (leaked) when the scenario ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass(frozen=True)
class Row:
    scenario: str
    calls: int
    successes: int
    errors: int
    missing: int
    max_latency: float
    bound: float
    leaked: int


_ROWS: list[Row] = []
_HEADER = ("scenario", "calls", "ok", "errors", "missing", "max latency / bound (s)", "leaked")


# A scenario may also hand over its row as a dict with these keys (the SQLite scenario's shape).
_DICT_KEYS = {
    "scenario": "scenario",
    "calls": "calls",
    "successes": "successes",
    "errors": "errors",
    "acknowledged_missing": "missing",
    "max_latency_s": "max_latency",
    "bound_s": "bound",
    "leaked_connections": "leaked",
}


@pytest.fixture
def fault_report():
    """``fault_report(scenario, calls=..., ...)``, or ``fault_report(row_dict)`` with :data:`_DICT_KEYS`,
    records the scenario's row for the final table."""

    def record(scenario: str | Mapping[str, Any], **figures: Any) -> Row:
        if isinstance(scenario, Mapping):
            row = Row(**{field: scenario[key] for key, field in _DICT_KEYS.items()})
        else:
            row = Row(scenario, **figures)
        _ROWS.append(row)
        return row

    return record


def format_table(rows: list[Row]) -> str:
    """The rows as a Markdown table (the README's reliability section shows one)."""
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    for row in rows:
        cells = (
            row.scenario,
            row.calls,
            row.successes,
            row.errors,
            row.missing,
            f"{row.max_latency:.2f} / {row.bound:g}",
            row.leaked,
        )
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _ROWS:
        terminalreporter.section("fault scenarios")
        terminalreporter.write_line(format_table(_ROWS))
