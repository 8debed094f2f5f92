"""The base of the two rules that rewrite legacy-helper calls, PS101 (pooled) and PS102 (compat).

Both find the helper's calls the same way, refuse the same calls for the same reasons (a name that may be
something else, arguments the replacement does not take, a helper not shown equivalent to the shim) and
prune the imports their rewrites free. Written once here, the two rules cannot drift apart on which
call is safe to touch; each keeps only what it does differently.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
from libcst.metadata import QualifiedNameProvider, Scope, ScopeProvider

from codemods.analysis.dunder_all import exported_names
from codemods.analysis.helper_uses import HelperUse, collect_helper_uses
from codemods.analysis.helper_verdicts import HelperVerdicts
from codemods.analysis.import_pruning import ImportPruner, PrunesImportsInBlocks, unused_after_rewrite
from codemods.rules.base import PoolshiftRule


class LegacyHelperCallRule(PrunesImportsInBlocks, PoolshiftRule):
    """Shared steps of PS101/PS102; subclasses call them from ``visit_Module`` (no ``RULE_ID`` here)."""

    def helper_uses(self, module: cst.Module) -> list[HelperUse]:
        """Every call of and reference to a legacy helper in ``module``, resolved by qualified names."""
        return collect_helper_uses(
            module,
            lambda node: self.get_metadata(QualifiedNameProvider, node, set()),
            self.options.legacy_helpers,
            self.context.full_module_name,
            self.context.full_package_name,
        )

    def helper_verdicts(self, module: cst.Module) -> HelperVerdicts:
        """The per-file cache that says whether each helper may be routed to the shim."""
        return HelperVerdicts(
            module,
            filename=self.context.filename,
            module_name=self.context.full_module_name,
            extra=self.options.extra,
        )

    def report_unrewritable_call(self, use: HelperUse, no_arguments: str) -> bool:
        """Record the call and return True when no rewrite can keep it: ambiguous callee or arguments.

        ``no_arguments`` says, for the report, why arguments stop this rule's rewrite.
        """
        if use.ambiguous:
            self.record(use.node, "reported", "dynamic-callee", f"the name may not be {use.helper}")
            return True
        assert isinstance(use.node, cst.Call)
        if use.node.args:
            self.record(use.node, "reported", "unsupported-argument", no_arguments)
            return True
        return False

    def report_unequivalent_helper(self, use: HelperUse, verdicts: HelperVerdicts) -> bool:
        """Record the call and return True when its helper is not shown to connect like the shim."""
        verdict = verdicts.verdict(use.helper)
        if verdict.equivalent:
            return False
        self.record(use.node, "reported", verdict.reason, verdict.message)
        return True

    def prune_imports_freed_by(self, module: cst.Module, rewritten: Sequence[cst.CSTNode]) -> set[Scope]:
        """Plan dropping the imports only ``rewritten`` used (``__all__`` re-exports stay); returns scopes."""
        scopes = {scope for scope in self.metadata[ScopeProvider].values() if isinstance(scope, Scope)}
        self.pruner = ImportPruner(unused_after_rewrite(scopes, rewritten, exported_names(module)))
        return scopes
