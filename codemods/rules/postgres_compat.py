"""PS102 postgres-compat: route every remaining legacy-helper call to ``db_utils.get_postgres_connection()``.

The call keeps its shape (``conn = get_postgres_connection()`` stays a connection or ``None``; the caller's
``close()``/``commit()``/``None`` guard keep their meaning on the shim's proxy), so the rewrite is
behavior-preserving *by construction* - but only if the helper itself behaves like the shim. That is why
each site first asks :class:`~codemods.legacy_helpers.HelperVerdicts`: a helper that connects differently
(other variables or defaults, ``connect_timeout``, ``autocommit``...) gets every call reported as
``custom-factory`` with what differs, and the user decides (``trust_legacy_helpers = true`` opts out).

PS101 runs first; a site it rewrote is no longer a helper call, so it is never seen twice here.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import QualifiedNameProvider, Scope, ScopeProvider

from codemods.legacy_helpers import (
    DEFAULT_HELPER_NAME,
    HelperUse,
    HelperVerdicts,
    ImportPruner,
    collect_helper_uses,
    exported_names,
    unused_after_rewrite,
)
from codemods.rules.base import PoolshiftRule

SHIM_CALL = "db_utils.get_postgres_connection"


class PostgresCompatRule(PoolshiftRule):
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
        helpers = self.options.legacy_helpers
        if not helpers:
            return False
        verdicts = HelperVerdicts(
            node,
            filename=self.context.filename,
            module_name=self.context.full_module_name,
            extra=self.options.extra,
        )
        uses = collect_helper_uses(
            node,
            lambda n: self.get_metadata(QualifiedNameProvider, n, set()),
            helpers,
            self.context.full_module_name,
            self.context.full_package_name,
        )
        rewritten: list[cst.CSTNode] = []
        for use in uses:
            if use.in_definition:
                continue  # recursion inside the helper: it goes with the helper (PS901 lists it)
            if self._decide(use, verdicts):
                assert isinstance(use.node, cst.Call)
                self.rewrites.add(id(use.node))
                rewritten.append(use.node.func)
        if rewritten:
            scopes = {scope for scope in self.metadata[ScopeProvider].values() if isinstance(scope, Scope)}
            self.pruner = ImportPruner(unused_after_rewrite(scopes, rewritten, exported_names(node)))
            AddImportsVisitor.add_needed_import(self.context, "db_utils")
        return True

    def _decide(self, use: HelperUse, verdicts: HelperVerdicts) -> bool:
        """Record the site; True when the call is rewritten."""
        if not use.is_call:
            self.record(use.node, "reported", "not-a-call", f"{use.helper} is used as a value, not called")
            return False
        if use.ambiguous:
            self.record(use.node, "reported", "dynamic-callee", f"the name may not be {use.helper}")
            return False
        assert isinstance(use.node, cst.Call)
        if use.node.args:
            self.record(
                use.node, "reported", "unsupported-argument", "the shim's function takes no arguments"
            )
            return False
        verdict = verdicts.verdict(use.helper)
        if not verdict.equivalent:
            self.record(use.node, "reported", verdict.reason, verdict.message)
            return False
        self.record(use.node, "migrated", None, f"{use.helper}() -> {SHIM_CALL}()")
        return True

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        if id(original_node) not in self.rewrites:
            return updated_node
        return updated_node.with_changes(func=cst.parse_expression(SHIM_CALL))

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        return self.pruner.prune_line(original_node, updated_node)

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        body, footer = self.pruner.drop_emptied(updated_node.body, updated_node.footer)
        if not body:
            body = [cst.SimpleStatementLine(body=[cst.Pass()])]
        return updated_node.with_changes(body=body, footer=footer)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        body, footer = self.pruner.drop_emptied(updated_node.body, updated_node.footer)
        return updated_node.with_changes(body=body, footer=footer)
