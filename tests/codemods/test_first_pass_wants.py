"""A rule without declared targets may still let the ``ast`` first pass decide which files it needs.

``PoolshiftRule.first_pass_wants`` is the engine's side of that contract: asked only where the rule's
PREFILTER words occur, answered from CPython's parse (cached by content), it keeps files the rule has
nothing to do in away from LibCST, while a file with a suppression comment always reaches the rule.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import ClassVar

import libcst as cst
from libcst.metadata import QualifiedNameProvider

from codemods.project import load_project
from codemods.rules.base import FirstPassView, PoolshiftRule
from codemods.runner import RunResult, run

FILES = {
    "uses.py": "import lib\n\nlib.frob(1)\n",
    "aliased.py": "from lib import frob as f\n\nf(2)\n",
    "mentions.py": "# frob is only mentioned here\nvalue = 1\n",
    "other_frob.py": "def frob(x):\n    return x\n\n\nfrob(3)\n",
    "suppressed.py": "value = 1  # poolshift: ignore[PS993]  (frob)\n",
}


class FrobRule(PoolshiftRule):
    """Reports every call of ``lib.frob``; parsing a file without one is wasted."""

    RULE_ID = "PS993"
    PREFILTER: ClassVar[tuple[str, ...]] = ("frob",)
    REASON_CODES: ClassVar[dict[str, str]] = {"frob": "a frob call"}

    def visit_Call(self, node: cst.Call) -> None:
        names = {q.name for q in self.get_metadata(QualifiedNameProvider, node.func, set())}
        if "lib.frob" in names:
            self.record(node, "reported", "frob", "frob")


class FrobRuleWithFirstPass(FrobRule):
    asked: ClassVar[list[str]] = []

    @classmethod
    def first_pass_wants(cls, view: FirstPassView) -> bool:
        cls.asked.append(view.text)
        return any(
            isinstance(node, ast.Call) and "lib.frob" in view.resolve(ast.unparse(node.func))
            for node in ast.walk(view.tree)
            if isinstance(node.func if isinstance(node, ast.Call) else None, (ast.Name, ast.Attribute))
        )


def scan(root: Path, rule: type[PoolshiftRule], *, cache: bool = False) -> RunResult:
    project = dataclasses.replace(load_project([root], cache=cache), rules=(rule,))
    return run(project, project.plan.phases, dry_run=True, chain=False, workers=1, cache=cache)


def make_tree(root: Path) -> None:
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    for name, text in FILES.items():
        (root / name).write_text(text)


def test_files_the_first_pass_turns_down_are_not_parsed(tmp_path: Path) -> None:
    make_tree(tmp_path)
    plain = scan(tmp_path, FrobRule)
    FrobRuleWithFirstPass.asked.clear()
    judged = scan(tmp_path, FrobRuleWithFirstPass)
    sites = [(site.path, site.line, site.rule, site.reason) for site in judged.sites]
    assert sites == [(site.path, site.line, site.rule, site.reason) for site in plain.sites]
    assert sites == [
        ("aliased.py", 3, "PS993", "frob"),
        ("suppressed.py", 1, "PS000", "unused-suppression"),
        ("uses.py", 3, "PS993", "frob"),
    ]
    assert plain.files_parsed == 5
    # mentions.py and other_frob.py hold no lib.frob call; suppressed.py is judged by the rule itself.
    assert judged.files_parsed == 3
    assert len(FrobRuleWithFirstPass.asked) == 4  # never asked about the file with a suppression


def test_answers_are_cached_by_content(tmp_path: Path) -> None:
    make_tree(tmp_path)
    FrobRuleWithFirstPass.asked.clear()
    scan(tmp_path, FrobRuleWithFirstPass, cache=True)
    assert len(FrobRuleWithFirstPass.asked) == 4
    (tmp_path / "mentions.py").write_text("import lib\n\nlib.frob(4)  # frob\n")
    FrobRuleWithFirstPass.asked.clear()
    again = scan(tmp_path, FrobRuleWithFirstPass, cache=True)
    assert FrobRuleWithFirstPass.asked == [(tmp_path / "mentions.py").read_text()]  # only the edited file
    assert ("mentions.py", 3) in [(site.path, site.line) for site in again.sites]


def test_a_file_cpython_rejects_is_left_to_the_transform(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "broken.py").write_text("frob(\n")
    FrobRuleWithFirstPass.asked.clear()
    result = scan(tmp_path, FrobRuleWithFirstPass)
    assert FrobRuleWithFirstPass.asked == []
    assert [outcome.result.error for outcome in result.errors] == ["syntax-error"]


class TwiddleRule(FrobRule):
    """Declared targets *and* a method whose receiver no one can resolve (like PS103's ``as_string``)."""

    RULE_ID = "PS992"
    PREFILTER: ClassVar[tuple[str, ...]] = ("frob", "twiddle")
    TARGETS: ClassVar[frozenset[str]] = frozenset({"lib.frob"})
    REASON_CODES: ClassVar[dict[str, str]] = {"frob": "a frob call", "twiddle": "a twiddle call"}

    def visit_Call(self, node: cst.Call) -> None:
        super().visit_Call(node)
        if isinstance(node.func, cst.Attribute) and node.func.attr.value == "twiddle":
            self.record(node, "reported", "twiddle", "twiddle")


class TwiddleRuleWithFirstPass(TwiddleRule):
    @classmethod
    def first_pass_wants(cls, view: FirstPassView) -> bool:
        return any(
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "twiddle"
            for node in ast.walk(view.tree)
        )


def test_a_rule_with_targets_also_runs_where_its_first_pass_check_says_so(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "method.py").write_text("def use(obj):\n    return obj.twiddle(1)\n")
    (tmp_path / "target.py").write_text("import lib\n\nlib.frob(1)\n")
    (tmp_path / "neither.py").write_text("twiddle = frob = 1\n")
    targets_only = scan(tmp_path, TwiddleRule)
    assert [(site.path, site.reason) for site in targets_only.sites] == [("target.py", "frob")]
    both = scan(tmp_path, TwiddleRuleWithFirstPass)
    assert [(site.path, site.reason) for site in both.sites] == [
        ("method.py", "twiddle"),
        ("target.py", "frob"),
    ]
    assert both.files_parsed == 2
