"""The guide's index lists every reason code of every rule, and its README explains every file error, so a
new code cannot ship undocumented."""

from __future__ import annotations

from pathlib import Path

import pytest

from codemods.guide import explain
from codemods.rules import all_rules
from codemods.transform import ERROR_CODES

INDEX = Path(__file__).resolve().parents[2] / "migration_guide" / "README.md"

PAIRS = [(rule_id, code) for rule_id, rule in all_rules().items() for code in rule.REASON_CODES]


@pytest.mark.parametrize(("rule_id", "code"), PAIRS, ids=[f"{r}-{c}" for r, c in PAIRS])
def test_reason_code_is_in_the_index(rule_id: str, code: str) -> None:
    rows = [line for line in INDEX.read_text().splitlines() if line.startswith(f"| `{code}` |")]
    assert rows, f"{code} is missing from the reason-code table in {INDEX.name}"
    assert f"[{rule_id}](rules/{rule_id}.md#{code})" in rows[0]


def test_index_links_every_rule_page() -> None:
    text = INDEX.read_text()
    for rule_id in all_rules():
        assert f"(rules/{rule_id}.md)" in text
        assert (INDEX.parent / "rules" / f"{rule_id}.md").is_file()


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_file_error_has_a_section_explain_prints(code: str) -> None:
    text = explain(code)
    assert text is not None
    assert text.startswith(f"### {code}\n")
