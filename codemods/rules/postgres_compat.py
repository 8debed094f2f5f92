"""PS102 postgres-compat: route every remaining legacy-helper call to ``db_utils.get_postgres_connection()``.

The call keeps its shape (``conn = get_postgres_connection()`` stays a connection or ``None``; the caller's
``close()``/``commit()``/``None`` guard keep their meaning on the shim's proxy), so the rewrite is
behavior-preserving *by construction* - but only if the helper itself behaves like the shim. That is why
each site first asks what the helper does differently (:mod:`codemods.legacy_helpers.lookup`): a helper
that connects differently (other variables or defaults, ``connect_timeout``, ``autocommit``...) gets every
call reported as ``custom-factory`` with what differs, and the user decides (``trust_legacy_helpers =
true`` opts out).

PS101 runs first; a site it rewrote is no longer a helper call, so it is never seen twice here.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
from libcst.codemod.visitors import AddImportsVisitor

from codemods.cst.imports.pruning import ImportPruner
from codemods.legacy_helpers.discovery import DEFAULT_HELPER_NAME
from codemods.legacy_helpers.lookup import HelperDifferences
from codemods.legacy_helpers.uses import HelperUse
from codemods.rules._legacy_helper_call import LegacyHelperCallRule

SHIM_CALL = "db_utils.get_postgres_connection"


class PostgresCompatRule(LegacyHelperCallRule):
    """Legacy helper call -> ``db_utils.get_postgres_connection()``, where the helper is shown equivalent."""

    RULE_ID = "PS102"
    NAME = "postgres-compat"
    DESCRIPTION = (
        "Route calls of the legacy get_postgres_connection helper to db_utils.get_postgres_connection()."
    )
    SAFETY = "guarded"
    PREFILTER: ClassVar[tuple[str, ...]] = (DEFAULT_HELPER_NAME,)
    REASON_CODES: ClassVar[dict[str, str]] = {
        "custom-factory": "the legacy helper connects differently from the shim (the message says how)",
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
        rewritten: list[cst.CSTNode] = []
        for use in self.helper_uses(node):
            if use.in_definition:
                continue  # recursion inside the helper: it goes with the helper (PS901 lists it)
            if self._decide(use, differences):
                assert isinstance(use.node, cst.Call)
                self.rewrites.add(id(use.node))
                rewritten.append(use.node.func)
        if rewritten:
            self.prune_imports_freed_by(node, rewritten)
            AddImportsVisitor.add_needed_import(self.context, "db_utils")
        return True

    def _decide(self, use: HelperUse, differences: HelperDifferences) -> bool:
        """Record the site; True when the call is rewritten."""
        if not use.is_call:
            self.record(use.node, "reported", "not-a-call", f"{use.helper} is used as a value, not called")
            return False
        if self.report_unrewritable_call(use, "the shim's function takes no arguments"):
            return False
        if self.report_unequivalent_helper(use, differences):
            return False
        self.record(use.node, "migrated", None, f"{use.helper}() -> {SHIM_CALL}()")
        return True

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        if id(original_node) not in self.rewrites:
            return updated_node
        return updated_node.with_changes(func=cst.parse_expression(SHIM_CALL))
