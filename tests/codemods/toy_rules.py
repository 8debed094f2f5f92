"""Small test-only rules, so engine tests do not depend on the real rules' behavior.

They live outside ``codemods/rules`` on purpose: rule auto-discovery must never pick them up.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import QualifiedNameProvider

from codemods.rules.base import PoolshiftRule


class ToySqliteRule(PoolshiftRule):
    """``sqlite3.connect(path)`` -> ``db_utils.sqlite.connect(path)``; ``:memory:`` is reported."""

    RULE_ID = "PS990"
    NAME = "toy-sqlite"
    PREFILTER: ClassVar[tuple[str, ...]] = ("sqlite3",)
    REASON_CODES: ClassVar[dict[str, str]] = {"memory-database": "an in-memory database is never pooled"}

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        names = {q.name for q in self.get_metadata(QualifiedNameProvider, original_node, set())}
        if "sqlite3.connect" not in names:
            return updated_node
        first = original_node.args[0].value if original_node.args else None
        if isinstance(first, cst.SimpleString) and first.evaluated_value == ":memory:":
            self.record(original_node, "reported", "memory-database", "in-memory database")
            return updated_node
        self.record(original_node, "migrated")
        AddImportsVisitor.add_needed_import(self.context, "db_utils.sqlite")
        return updated_node.with_changes(func=cst.parse_expression("db_utils.sqlite.connect"))


class CrashingRule(PoolshiftRule):
    """Raises on any file that calls ``boom()``."""

    RULE_ID = "PS991"
    PREFILTER: ClassVar[tuple[str, ...]] = ("boom",)

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name) and node.func.value == "boom":
            raise RuntimeError("toy rule exploded")


class BrokenOutputRule(PoolshiftRule):
    """Turns ``broken(...)`` into ``1.real(...)``: LibCST builds it, but ``1.r`` is not valid Python."""

    RULE_ID = "PS992"
    PREFILTER: ClassVar[tuple[str, ...]] = ("broken",)

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        if isinstance(original_node.func, cst.Name) and original_node.func.value == "broken":
            self.record(original_node, "migrated")
            return updated_node.with_changes(
                func=cst.Attribute(value=cst.Integer("1"), attr=cst.Name("real"))
            )
        return updated_node


class RewriteLatin1Rule(PoolshiftRule):
    """Renames ``old_name`` to a non-latin-1 identifier: the output cannot be encoded as latin-1."""

    RULE_ID = "PS993"
    PREFILTER: ClassVar[tuple[str, ...]] = ("old_name",)

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        if original_node.value == "old_name":
            self.record(original_node, "migrated")
            return updated_node.with_changes(value="new_\u0394")
        return updated_node
