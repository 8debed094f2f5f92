"""PS901 cleanup: remove the legacy helper once nothing in the tree refers to it any more.

It runs last, in the implicit final phase, and only in the helper's own module. The runner computes
``RuleOptions.remaining_legacy_references`` over the *whole* tree (with
:func:`codemods.legacy_helpers.references.find_legacy_references`) after every other rule ran; this rule
adds what the same function finds in the helper's own module (a cheap second check) and then decides:

* references remain -> the file is not touched; every reference is reported (``helper-still-referenced``)
  so the user sees exactly what still blocks the cleanup;
* none remain -> the helper's ``def`` goes, with its entry in ``__all__`` and the imports only it used
  (``import psycopg2``, ``import os``...). Everything else at module level stays: names it used that are
  defined in the module (``_settings()``, ``log``), which other code may import, and every statement that
  does anything (``load_dotenv()``, logging setup...); the report lists what was kept and why.

The file itself is never deleted, and never emptied: a module left with nothing (not even a docstring)
would be a 0-byte file that still imports, silently, so the helper then stays and the site is reported
(``module-would-be-empty``). Only helpers the user named (``legacy_helpers``) or called
``get_postgres_connection`` are removed (``RuleOptions.removable_helpers``): one found only by what it does
may be public API that nothing in the tree calls. A ``# poolshift: ignore[PS901]`` comment on the helper's
``def`` line (or alone on the line above it) keeps that helper whatever refers to it: reported
``suppressed``, and the comment is reported as unused when no removable helper is defined on that line.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import libcst as cst
from libcst.metadata import Scope, ScopeProvider

from codemods.cst.imports.dunder_all import all_assignments, exported_names
from codemods.cst.imports.pruning import ImportPruner, PrunesImportsInBlocks, unused_after_rewrite
from codemods.cst.literals import literal_string
from codemods.cst.syntax import code_of, strip_docstring
from codemods.legacy_helpers.discovery import DEFAULT_HELPER_NAME
from codemods.legacy_helpers.references import find_legacy_references
from codemods.rules.base import SUPPRESSED_MESSAGE, PoolshiftRule


class LegacyHelperCleanupRule(PrunesImportsInBlocks, PoolshiftRule):
    """Delete the legacy helper's definition when no reference to it remains anywhere."""

    RULE_ID = "PS901"
    NAME = "cleanup"
    DESCRIPTION = (
        "Remove the legacy get_postgres_connection helper and the imports only it used, once unreferenced."
    )
    SAFETY = "guarded"
    RUNS_LAST = True
    PREFILTER: ClassVar[tuple[str, ...]] = (DEFAULT_HELPER_NAME,)
    LEGACY_HELPER_PREFILTER = True
    REASON_CODES: ClassVar[dict[str, str]] = {
        "helper-still-referenced": "the helper is still used somewhere in the tree (the message says where)",
        "module-would-be-empty": "removing the helper would leave its module empty (no docstring): kept",
    }

    def visit_Module(self, node: cst.Module) -> bool:
        self.doomed: set[int] = set()
        self.doomed_strings: set[int] = set()
        self.pruner = ImportPruner(set())
        module_name = self.context.full_module_name
        if not module_name:
            return False
        removable = self.options.removable_helpers
        if removable is None:
            removable = self.options.legacy_helpers
        definitions = [
            statement
            for statement in node.body
            if isinstance(statement, cst.FunctionDef)
            and f"{module_name}.{statement.name.value}" in self.options.legacy_helpers
            and f"{module_name}.{statement.name.value}" in removable
        ]
        # A helper the user keeps on purpose is reported once, never removed, and blocks nothing else.
        kept_on_purpose = {id(definition) for definition in definitions if self.is_suppressed(definition)}
        for definition in definitions:
            if id(definition) in kept_on_purpose:
                self.record(definition, "reported", None, SUPPRESSED_MESSAGE)
        definitions = [definition for definition in definitions if id(definition) not in kept_on_purpose]
        if not definitions:
            return False
        # The runner's whole-tree list, plus this file checked here as well: defence in depth, so a
        # reference in the helper's own module can never be missed by a runner that passed a stale list.
        path = self.context.filename or "<string>"
        own = find_legacy_references({path: node.code}, {path: module_name}, self.options.legacy_helpers)
        remaining = tuple(dict.fromkeys([*self.options.remaining_legacy_references, *own]))
        if remaining:
            for definition in definitions:
                for reference in remaining:
                    self.record(definition, "reported", "helper-still-referenced", reference)
            return False
        names = {definition.name.value for definition in definitions}
        self.doomed = {id(definition) for definition in definitions}
        self.doomed_strings = self._all_entries(node, names)
        scopes = {scope for scope in self.metadata[ScopeProvider].values() if isinstance(scope, Scope)}
        self.pruner = ImportPruner(unused_after_rewrite(scopes, definitions, exported_names(node) - names))
        kept = _kept_statements(node, self.doomed)
        note = f"; kept at module level, as they do more than connect: {kept}" if kept else ""
        for definition in definitions:
            self.record(definition, "migrated", None, f"removed {module_name}.{definition.name.value}{note}")
        return True

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        """Never leave an empty module behind: then keep the helper and say why."""
        result = super().transform_module_impl(tree)
        if result is tree or result.body or not self.doomed:
            return result
        self.sites = [
            replace(
                site,
                status="reported",
                reason="module-would-be-empty",
                message=site.message.split(";")[0].replace("removed", "kept", 1)
                + ": removing it would leave an empty module (give the module a docstring, or delete "
                "the file yourself)",
            )
            if site.status == "migrated"
            else site
            for site in self.sites
        ]
        return tree

    @staticmethod
    def _all_entries(module: cst.Module, names: set[str]) -> set[int]:
        found: set[int] = set()

        class Finder(cst.CSTVisitor):
            def visit_Element(self, node: cst.Element) -> None:
                value = node.value
                if isinstance(value, cst.SimpleString) and literal_string(value) in names:
                    found.add(id(node))

        # Every form the reference finder counts as part of the helper's own definition (`=`, `+=` and
        # annotated assignments) must lose the entry too: an entry left behind would make
        # `from module import *` raise AttributeError once the helper is gone.
        for assignment in all_assignments(module):
            assignment.visit(Finder())
        return found

    def leave_List(self, original_node: cst.List, updated_node: cst.List) -> cst.List:
        if not any(id(element) in self.doomed_strings for element in original_node.elements):
            return updated_node
        return updated_node.with_changes(elements=self._kept(original_node, updated_node))

    def leave_Tuple(self, original_node: cst.Tuple, updated_node: cst.Tuple) -> cst.Tuple:
        if not any(id(element) in self.doomed_strings for element in original_node.elements):
            return updated_node
        kept = self._kept(original_node, updated_node)
        if len(kept) == 1:
            kept[0] = kept[0].with_changes(comma=cst.Comma())  # ("x",) stays a tuple
        return updated_node.with_changes(elements=kept)

    def _kept(
        self, original_node: cst.List | cst.Tuple, updated_node: cst.List | cst.Tuple
    ) -> list[cst.BaseElement]:
        """The elements minus the helper's ``__all__`` entries, keeping the list's trailing-comma style."""
        kept = [
            u
            for o, u in zip(original_node.elements, updated_node.elements, strict=True)
            if id(o) not in self.doomed_strings
        ]
        if (
            kept
            and original_node.elements[-1] is not None
            and id(original_node.elements[-1]) in self.doomed_strings
        ):
            last_comma = updated_node.elements[-1].comma
            kept[-1] = kept[-1].with_changes(comma=last_comma)
        return kept

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.FunctionDef | cst.RemovalSentinel:
        if id(original_node) in self.doomed:
            return cst.RemoveFromParent()
        return updated_node


def _kept_statements(module: cst.Module, doomed: set[int]) -> str:
    """The module-level statements that stay and do something: not imports, ``__all__`` or removed defs."""
    kept: list[str] = []
    for statement in strip_docstring(list(module.body)):
        if id(statement) in doomed or isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            continue
        if isinstance(statement, cst.SimpleStatementLine) and all(
            isinstance(small, (cst.Import, cst.ImportFrom)) or _is_dunder_all(small)
            for small in statement.body
        ):
            continue
        kept.append(f"`{code_of(statement)}`")
    return ", ".join(kept)


def _is_dunder_all(small: cst.BaseSmallStatement) -> bool:
    targets: list[cst.BaseExpression] = []
    if isinstance(small, cst.Assign):
        targets = [target.target for target in small.targets]
    elif isinstance(small, (cst.AugAssign, cst.AnnAssign)):
        targets = [small.target]
    return any(isinstance(target, cst.Name) and target.value == "__all__" for target in targets)
