"""PS102 postgres-compat (opt-in): route legacy-helper calls to ``db_utils.get_postgres_connection()``.

Off unless selected by ID (``select = ["PS102"]`` or ``--select PS102``): PS100 already pools the
helper's own ``psycopg2.connect``, so its callers borrow pooled connections without changing a line, and
nothing is gained by routing them to the shim's settings instead of the helper's. PS102 is for a team
that wants the helper gone (PS901 removes it once nothing refers to it).

The call keeps its shape (``conn = get_postgres_connection()`` stays a connection or ``None``; the caller's
``close()``/``commit()``/``None`` guard keep their meaning on the shim's proxy), so the rewrite is
behavior-preserving *by construction* - but only if the helper itself behaves like the shim, down to the
database it reaches. That is why each site first asks what the helper does differently
(:mod:`codemods.legacy_helpers.lookup`): a helper that connects differently (other variables or defaults,
``connect_timeout``, ``autocommit``...) gets its calls reported as ``custom-factory``, and what differs is
listed once, at the helper's definition.

PS101 runs first; a site it rewrote is no longer a helper call, so it is never seen twice here.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import QualifiedNameProvider

from codemods.cst.imports.pruning import ImportPruner
from codemods.cst.syntax import module_level_functions
from codemods.legacy_helpers.discovery import DEFAULT_HELPER_NAME
from codemods.legacy_helpers.lookup import HelperDifferences
from codemods.legacy_helpers.uses import HelperUse
from codemods.rules._legacy_helper_call import LegacyHelperCallRule

SHIM_CALL = "db_utils.get_postgres_connection"
POOLED_BLOCK = "db_utils.get_pooled_connection"


class _PooledBlockArguments(cst.CSTVisitor):
    """The arguments of ``get_pooled_connection(...)`` calls (resolved by name): the helper passed there."""

    def __init__(self, rule: PostgresCompatRule) -> None:
        super().__init__()
        self.rule = rule
        self.found: set[int] = set()

    def visit_Call(self, node: cst.Call) -> None:
        names = self.rule.get_metadata(QualifiedNameProvider, node.func, set())
        if any(name.name == POOLED_BLOCK for name in names):
            self.found.update(id(arg.value) for arg in node.args)


class PostgresCompatRule(LegacyHelperCallRule):
    """Legacy helper call -> ``db_utils.get_postgres_connection()``, where the helper is shown equivalent."""

    RULE_ID = "PS102"
    NAME = "postgres-compat"
    DESCRIPTION = (
        "Opt-in: route calls of a legacy helper shown equivalent to the shim to "
        "db_utils.get_postgres_connection()."
    )
    SAFETY = "guarded"
    DEFAULT_ENABLED = False
    PREFILTER: ClassVar[tuple[str, ...]] = (DEFAULT_HELPER_NAME,)
    REASON_CODES: ClassVar[dict[str, str]] = {
        "custom-factory": "the legacy helper connects differently from the shim (listed at its definition)",
        "unknown-helper": "the legacy helper's definition was not found, so it cannot be shown equivalent",
        "unsupported-argument": "the helper is called with arguments; the shim takes none",
        "dynamic-callee": "the name may be the helper or something else (it is rebound)",
        "not-a-call": "the helper is referenced without being called (passed or stored as a value)",
    }

    def visit_Module(self, node: cst.Module) -> bool:
        self.pruner = ImportPruner(set())
        self.rewrites: set[int] = set()
        if not self.options.legacy_helpers:
            return False
        differences = self.helper_differences(node)
        self._report_differing_definitions(node, differences)
        pooled = _PooledBlockArguments(self)
        node.visit(pooled)
        rewritten: list[cst.CSTNode] = []
        for use in self.helper_uses(node):
            if use.in_definition:
                continue  # recursion inside the helper: it goes with the helper (PS901 lists it)
            if id(use.node) in pooled.found:
                continue  # PS101's `get_pooled_connection(helper)`: already the idiomatic form
            if self._decide(use, differences):
                assert isinstance(use.node, cst.Call)
                self.rewrites.add(id(use.node))
                rewritten.append(use.node.func)
        if rewritten:
            self.prune_imports_freed_by(node, rewritten)
            AddImportsVisitor.add_needed_import(self.context, "db_utils")
        return True

    def _report_differing_definitions(self, module: cst.Module, differences: HelperDifferences) -> None:
        """One site per differing helper, at its ``def``, listing every difference (not one per call)."""
        for function in module_level_functions(module):
            helper = f"{self.context.full_module_name}.{function.name.value}"
            found = differences.of(helper) if helper in self.options.legacy_helpers else None
            if found:
                self.record(
                    function,
                    "reported",
                    "custom-factory",
                    f"{helper} differs from the shim: " + "; ".join(found),
                )

    def _decide(self, use: HelperUse, differences: HelperDifferences) -> bool:
        """Record the site; True when the call is rewritten."""
        if not use.is_call:
            self.record(use.node, "reported", "not-a-call", f"{use.helper} is used as a value, not called")
            return False
        if self.report_unrewritable_call(use, "the shim's function takes no arguments"):
            return False
        if self.report_unknown_helper(use, differences, "that it connects like the shim"):
            return False
        if differences.of(use.helper):
            self.record(
                use.node,
                "reported",
                "custom-factory",
                f"{use.helper} differs from the shim (every difference is listed at its definition); "
                "PS100 pools its own connect instead",
            )
            return False
        self.record(use.node, "migrated", None, f"{use.helper}() -> {SHIM_CALL}()")
        return True

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        if id(original_node) not in self.rewrites:
            return updated_node
        return updated_node.with_changes(func=cst.parse_expression(SHIM_CALL))
