"""``# poolshift: ignore[PS201]`` comments: sites the user keeps on purpose, and suppressions nothing needs.

A comment suppresses the sites on its own line when it trails code, or on the next line when it stands
alone (the line above a call); ``# poolshift: ignore`` without codes suppresses every rule there. Two
places use this module: a rule asks (``PoolshiftRule.is_suppressed``) before deciding to rewrite, so a
suppressed call is never rewritten; and the transform passes a file's sites through
:func:`apply_suppressions`, which marks suppressed sites ``suppressed`` and returns each suppression that
suppressed nothing, reported like ruff's ``RUF100``. Only rules that ran on the file judge: a code of
a rule that was not selected, or did not run in this phase, may still be needed.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

__all__ = [
    "MARKER",
    "UNUSED_CODE",
    "UNUSED_RULE",
    "Suppression",
    "apply_suppressions",
    "find_suppressions",
    "suppressed_at",
]

#: Text every suppression contains: files without it are never tokenized.
MARKER = "poolshift:"
#: The pseudo-rule and reason code of an unused suppression (``poolshift explain unused-suppression``).
UNUSED_RULE = "PS000"
UNUSED_CODE = "unused-suppression"
_COMMENT = re.compile(r"#\s*poolshift:\s*ignore\b(?:\[(?P<codes>[^\]]*)\])?")


@dataclass(frozen=True)
class Suppression:
    """One comment: where it is, which line it covers, which rules (empty: all)."""

    line: int  # where the comment is
    column: int
    covers: int  # the line whose sites it suppresses
    codes: frozenset[str]

    def matches(self, rule: str) -> bool:
        return not self.codes or rule in self.codes

    def judged_by(self, rules_run: Collection[str]) -> bool:
        """Whether the rules that ran can tell this suppression is unused (bare ones: any rule can)."""
        return not self.codes or any(code in rules_run for code in self.codes)

    def unused_message(self) -> str:
        codes = ", ".join(sorted(self.codes)) or "any rule"
        return f"suppresses nothing: no site of {codes} is left alone on line {self.covers}"


def find_suppressions(text: str) -> list[Suppression]:
    """Every suppression comment of ``text`` (none when the text cannot be tokenized)."""
    if MARKER not in text:
        return []
    found: list[Suppression] = []
    code_lines: set[int] = set()
    comments: list[tokenize.TokenInfo] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                comments.append(token)
            elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                code_lines.update(range(token.start[0], token.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        return []
    for comment in comments:
        match = _COMMENT.match(comment.string)
        if match is None:
            continue
        line = comment.start[0]
        codes = frozenset(c.strip() for c in (match.group("codes") or "").split(",") if c.strip())
        covers = line if line in code_lines else line + 1
        found.append(Suppression(line, comment.start[1] + 1, covers, codes))
    return found


def suppressed_at(suppressions: Iterable[Suppression], line: int, rule: str) -> bool:
    """Whether a site of ``rule`` starting on ``line`` is suppressed."""
    return any(s.covers == line and s.matches(rule) for s in suppressions)


class _SiteLike(Protocol):
    @property
    def rule(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def status(self) -> str: ...


SiteT = TypeVar("SiteT", bound=_SiteLike)


def apply_suppressions(
    text: str, sites: Sequence[SiteT], rules_run: Collection[str]
) -> tuple[list[SiteT], list[Suppression]]:
    """``sites`` with suppressed ones marked ``suppressed``, and the suppressions that suppressed nothing.

    Rules record a site they leave alone because of a suppression as ``reported``; a rewritten site is
    never marked (the comment did not stop it), so its suppression shows up as unused. A suppression
    naming only rules that did not run is not judged.
    """
    suppressions = find_suppressions(text)
    if not suppressions:
        return list(sites), []
    used: set[Suppression] = set()
    marked: list[SiteT] = []
    for site in sites:
        hits = [s for s in suppressions if s.covers == site.line and s.matches(site.rule)]
        if hits and site.status == "reported":
            used.update(hits)
            marked.append(replace(site, status="suppressed"))  # type: ignore[type-var]
        else:
            marked.append(site)
    unused = [s for s in suppressions if s not in used and s.judged_by(rules_run)]
    return marked, unused
