"""The base of the two rules that rewrite legacy-helper calls, PS101 (pooled) and PS102 (compat).

Both find the helper's calls the same way, refuse the same calls for the same reasons (a name that may be
something else, arguments the replacement does not take, a helper whose definition was not found) and
prune the imports their rewrites free. Written once here, the two rules cannot drift apart on which
call is safe to touch; each keeps only what it does differently.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
from libcst.metadata import QualifiedNameProvider, Scope, ScopeProvider

from codemods.cst.imports.dunder_all import exported_names
from codemods.cst.imports.pruning import ImportPruner, PrunesImportsInBlocks, unused_after_rewrite
from codemods.legacy_helpers.lookup import HelperDifferences
from codemods.legacy_helpers.uses import HelperUse, collect_helper_uses
from codemods.rules.base import SUPPRESSED_MESSAGE, PoolshiftRule

#: How a report message about a method helper called through ``self`` goes on after the helper's name
#: (scan's line for that helper counts these: see codemods.helper_summary).
THROUGH_RECEIVER = " is a method called through the object"


class LegacyHelperCallRule(PrunesImportsInBlocks, PoolshiftRule):
    """Shared steps of PS101/PS102; subclasses call them from ``visit_Module`` (no ``RULE_ID`` here)."""

    LEGACY_HELPER_PREFILTER = True

    def helper_uses(self, module: cst.Module) -> list[HelperUse]:
        """Every call of and reference to a legacy helper in ``module``, resolved by qualified names."""
        return collect_helper_uses(
            module,
            lambda node: self.get_metadata(QualifiedNameProvider, node, set()),
            self.options.legacy_helpers,
            self.context.full_module_name,
            self.context.full_package_name,
        )

    def helper_differences(self, module: cst.Module, *, contract_only: bool = False) -> HelperDifferences:
        """The per-file cache of what each helper does differently from the shim (or from its contract)."""
        return HelperDifferences(
            module,
            filename=self.context.filename,
            module_name=self.context.full_module_name,
            known=(
                self.options.legacy_helper_contracts
                if contract_only
                else self.options.legacy_helper_differences
            ),
            contract_only=contract_only,
        )

    def report_unrewritable_call(
        self, use: HelperUse, no_arguments: str, *, arguments_allowed: bool = False
    ) -> bool:
        """Record the call and return True when no rewrite can keep it: ambiguous callee or arguments.

        ``no_arguments`` says, for the report, why arguments stop this rule's rewrite, unless the rule
        can keep this call's arguments (``arguments_allowed``).
        """
        if self.is_suppressed(use.node):
            self.record(use.node, "reported", None, SUPPRESSED_MESSAGE)
            return True
        if use.through_receiver:
            self.record(
                use.node,
                "reported",
                "dynamic-callee",
                f"{use.helper}{THROUGH_RECEIVER}: a subclass may override it, so which method runs is not "
                "known here (its connect is pooled by PS100 all the same)",
            )
            return True
        if use.ambiguous:
            self.record(use.node, "reported", "dynamic-callee", f"the name may not be {use.helper}")
            return True
        assert isinstance(use.node, cst.Call)
        if use.node.args and not arguments_allowed:
            self.record(use.node, "reported", "unsupported-argument", no_arguments)
            return True
        return False

    def report_unknown_helper(self, use: HelperUse, lookup: HelperDifferences, needed_for: str) -> bool:
        """Record the call and return True when the helper's definition was not found."""
        if lookup.of(use.helper) is not None:
            return False
        self.record(
            use.node,
            "reported",
            "unknown-helper",
            f"the definition of {use.helper} was not found, so poolshift cannot show {needed_for}",
        )
        return True

    def prune_imports_freed_by(self, module: cst.Module, rewritten: Sequence[cst.CSTNode]) -> set[Scope]:
        """Plan dropping the imports only ``rewritten`` used (``__all__`` re-exports stay); returns scopes."""
        scopes = {scope for scope in self.metadata[ScopeProvider].values() if isinstance(scope, Scope)}
        self.pruner = ImportPruner(unused_after_rewrite(scopes, rewritten, exported_names(module)))
        return scopes
