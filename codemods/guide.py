"""``poolshift rules`` and ``poolshift explain CODE``: the rule table and the guide's text in a terminal.

The guide's pages have one home, ``migration_guide/``: read there from a checkout (an editable or source
install), and from the copy the wheel's build puts in the package (``codemods/_guide/``, see
``build_guide.py`` at the repository root). Without either, ``explain`` prints what the code itself knows
(the rule's description, the reason code's one-line meaning) and says where the full page is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from codemods.report import markdown_table, text_table
from codemods.rules import all_rules
from codemods.suppressions import UNUSED_CODE, UNUSED_RULE
from codemods.transform import ERROR_CODES

__all__ = ["GUIDE_URL_HINT", "explain", "guide_dir", "rules_table"]

GUIDE_URL_HINT = "migration_guide/ in the poolshift repository"
_SUPPRESSIONS = "a `# poolshift: ignore` comment that keeps no site from being rewritten; remove it"


#: The guide pages' directory inside an installed wheel's ``codemods`` package (build_guide.PACKAGED).
PACKAGED_GUIDE = "_guide"


def guide_dir() -> Path | None:
    """The checkout's ``migration_guide/`` next to the ``codemods`` package, else the wheel's copy."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "migration_guide", package / PACKAGED_GUIDE):
        if (candidate / "README.md").is_file():
            return candidate
    return None


def rules_table(fmt: str) -> str:
    """Every rule: id, name, safety, the phase it runs in, and one line."""
    rows = [
        (rule_id, rule.NAME, rule.SAFETY, "cleanup" if rule.RUNS_LAST else "every phase", rule.DESCRIPTION)
        for rule_id, rule in all_rules().items()
    ]
    headers = ["id", "name", "safety", "phase", "description"]
    if fmt == "markdown":
        return "\n".join(markdown_table([h.capitalize() for h in headers], rows)) + "\n"
    if fmt == "json":
        return json.dumps([dict(zip(headers, row, strict=True)) for row in rows], indent=2) + "\n"
    return "\n".join(text_table(headers, rows)) + "\n"


def _section(text: str, code: str) -> str | None:
    """The ``### code`` section of a markdown page (up to the next heading of that level or higher)."""
    match = re.search(rf"^###\s+`?{re.escape(code)}`?\s*$", text, re.MULTILINE)
    if match is None:
        return None
    end = re.search(r"^#{1,3}\s", text[match.end() :], re.MULTILINE)
    return text[match.start() : match.end() + (end.start() if end else len(text))].strip() + "\n"


def explain(code: str) -> str | None:
    """The guide's text for a rule id or a reason code; None when poolshift knows no such code."""
    rules = all_rules()
    guide = guide_dir()
    if code.upper() in rules:
        rule = rules[code.upper()]
        page = guide / "rules" / f"{rule.RULE_ID}.md" if guide else None
        if page is not None and page.is_file():
            return page.read_text(encoding="utf-8")
        return f"{rule.RULE_ID} ({rule.NAME}): {rule.DESCRIPTION}\n(full page: {GUIDE_URL_HINT})\n"
    if code in (UNUSED_CODE, UNUSED_RULE):
        page = guide / "README.md" if guide else None
        section = _section(page.read_text(encoding="utf-8"), UNUSED_CODE) if page else None
        return section or f"{UNUSED_CODE}: {_SUPPRESSIONS}\n(full page: {GUIDE_URL_HINT})\n"
    if code in ERROR_CODES:  # a file's error (``path: error [code]``): its section of the guide's README
        page = guide / "README.md" if guide else None
        section = _section(page.read_text(encoding="utf-8"), code) if page else None
        return section or f"{code}: {ERROR_CODES[code]}\n(full page: {GUIDE_URL_HINT})\n"
    owners = [rule for rule in rules.values() if code in rule.REASON_CODES]
    if not owners:
        return None
    parts: list[str] = []
    for rule in owners:
        page = guide / "rules" / f"{rule.RULE_ID}.md" if guide else None
        section = _section(page.read_text(encoding="utf-8"), code) if page and page.is_file() else None
        heading = f"# {code} ({rule.RULE_ID}, {rule.NAME})\n\n"
        parts.append(heading + (section or f"{rule.REASON_CODES[code]}\n(full page: {GUIDE_URL_HINT})\n"))
    return "\n".join(parts)
