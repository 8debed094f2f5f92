"""Dropping the imports a rule's rewrite left unused, without losing the comments around them.

PS101 and PS102 (which rewrite helper calls) and PS901 (which deletes the helper) all end up with imports
nothing uses any more. They decide *before* transforming which aliases those are
(:func:`unused_after_rewrite`, from LibCST's scopes) and drop them during their own pass
(:class:`ImportPruner`), wired in by the :class:`PrunesImports` mixins so the three rules cannot drift.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import libcst as cst
from libcst.helpers import get_absolute_module_from_package_for_import
from libcst.metadata import Assignment, ImportAssignment, Scope

from codemods.cst.imports.rewriting import with_blank_lines


class _NodeIds(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[int] = set()

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.ids.add(id(node))
        return True


def subtree_ids(nodes: Iterable[cst.CSTNode]) -> set[int]:
    collector = _NodeIds()
    for node in nodes:
        node.visit(collector)
    return collector.ids


def unused_after_rewrite(
    scopes: Iterable[Scope], removed_nodes: Iterable[cst.CSTNode], exported: Iterable[str] = ()
) -> set[int]:
    """ids of import aliases whose every use lies inside ``removed_nodes`` (they become unused).

    Grouped by alias because ``import a.b`` binds both ``a`` and ``a.b`` in LibCST's scopes: the alias
    goes only if none of its bindings is used anywhere else. Names listed in ``__all__`` are re-exports
    and are always kept.
    """
    removed = subtree_ids(removed_nodes)
    keep_names = set(exported)
    by_alias: dict[int, list[Assignment]] = {}
    for scope in scopes:
        for assignment in scope.assignments:
            if isinstance(assignment, ImportAssignment):
                alias = _alias_for(assignment)
                if alias is not None:
                    by_alias.setdefault(id(alias), []).append(assignment)
    unused: set[int] = set()
    for alias_id, bindings in by_alias.items():
        nodes = [id(access.node) for binding in bindings for access in binding.references]
        if any(binding.name in keep_names for binding in bindings):
            continue
        if nodes and all(node in removed for node in nodes):
            unused.add(alias_id)
    return unused


Removal = tuple[str, str | None, str | None]  # (module, obj, alias), as RemoveImportsVisitor names one


def unused_after_calls_rewritten(
    scopes: Iterable[Scope],
    removals: Iterable[Removal],
    rewritten: Iterable[cst.CSTNode],
    kept_names: Collection[str],
    package: str | None,
) -> tuple[list[Removal], list[Removal]]:
    """Split a redirect rule's ``removals`` by what the *original* module's scopes already show.

    ``rewritten`` are the original call targets the rule replaced (``sqlite3.connect``). A removal each of
    whose imports (at any depth) is used only inside those nodes is unused once they are replaced: the
    first list, which :class:`~codemods.cst.imports.rewriting.KnownUnusedImports` removes without a
    second analysis of the rewritten module. One whose imports are all still used elsewhere is dropped
    (nothing would go); the rest (imported several times and used at some, or not found) are left to
    LibCST's own analysis: the second list. ``kept_names`` (``__all__`` exports, names in string
    annotations) are always in use, as for RemoveImportsVisitor.
    """
    inside = subtree_ids(rewritten)
    wanted = set(removals)
    used_by_alias: dict[int, bool] = {}
    removal_of_alias: dict[int, Removal] = {}
    for scope in scopes:
        for assignment in scope.assignments:
            if not isinstance(assignment, ImportAssignment):
                continue
            alias = _alias_for(assignment)
            statement = assignment.node
            if alias is None or not isinstance(statement, (cst.Import, cst.ImportFrom)):
                continue
            removal = _removal_of(statement, alias, package)
            if removal not in wanted:
                continue
            removal_of_alias[id(alias)] = removal
            used = assignment.name in kept_names or any(
                id(access.node) not in inside for access in assignment.references
            )
            used_by_alias[id(alias)] = used_by_alias.get(id(alias), False) or used
    certain: list[Removal] = []
    uncertain: list[Removal] = []
    for removal in dict.fromkeys(removals):
        states = {used_by_alias[alias] for alias, found in removal_of_alias.items() if found == removal}
        if states == {False}:
            certain.append(removal)
        elif states != {True}:
            uncertain.append(removal)
    return certain, uncertain


def _removal_of(
    statement: cst.Import | cst.ImportFrom, alias: cst.ImportAlias, package: str | None
) -> Removal | None:
    if isinstance(statement, cst.Import):
        return (alias.evaluated_name, None, alias.evaluated_alias)
    module = get_absolute_module_from_package_for_import(package, statement)
    return None if module is None else (module, alias.evaluated_name, alias.evaluated_alias)


def _alias_for(binding: ImportAssignment) -> cst.ImportAlias | None:
    node = binding.node
    if not isinstance(node, (cst.Import, cst.ImportFrom)) or isinstance(node.names, cst.ImportStar):
        return None
    for alias in node.names:
        bound = alias.evaluated_alias or alias.evaluated_name
        if bound == binding.name or (
            isinstance(node, cst.Import) and alias.asname is None and bound.split(".")[0] == binding.name
        ):
            return alias
    return None


class ImportPruner:
    """Drops import aliases (by id of the *original* node) during a rule's own transform pass.

    A rule calls ``prune_line`` from ``leave_SimpleStatementLine`` and ``drop_emptied`` from
    ``leave_Module``/``leave_IndentedBlock``. Unlike LibCST's RemoveImportsVisitor it keeps the comment
    lines above a removed import (they move to the next statement), and it knows exactly which aliases
    became unused because the rule decided every rewrite before transforming.
    """

    def __init__(self, alias_ids: set[int]) -> None:
        self.alias_ids = alias_ids
        # Placeholder lines by id, holding the placeholders themselves: an id is only an identity while
        # its object lives, and a placeholder dropped from an inner block is freed before the module's
        # new nodes are built, so a bare id could name an unrelated new statement and drop it.
        self.emptied: dict[int, tuple[cst.SimpleStatementLine, cst.Comment | None]] = {}

    def prune_line(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        if not self.alias_ids:
            return updated_node
        smalls: list[cst.BaseSmallStatement] = []
        for original, updated in zip(original_node.body, updated_node.body, strict=True):
            if isinstance(original, (cst.Import, cst.ImportFrom)) and isinstance(
                updated, (cst.Import, cst.ImportFrom)
            ):
                pruned = self._prune(original, updated)
                if pruned is not None:
                    smalls.append(pruned)
            else:
                smalls.append(updated)
        if len(smalls) == len(updated_node.body) and all(
            a is b for a, b in zip(smalls, updated_node.body, strict=True)
        ):
            return updated_node
        if not smalls:
            result = updated_node.with_changes(body=[cst.Pass()])
            self.emptied[id(result)] = (result, updated_node.trailing_whitespace.comment)
            return result
        smalls[-1] = smalls[-1].with_changes(semicolon=cst.MaybeSentinel.DEFAULT)
        return updated_node.with_changes(body=smalls)

    def _prune(
        self, original: cst.Import | cst.ImportFrom, updated: cst.Import | cst.ImportFrom
    ) -> cst.Import | cst.ImportFrom | None:
        if isinstance(original.names, cst.ImportStar) or isinstance(updated.names, cst.ImportStar):
            return updated
        keep = [u for o, u in zip(original.names, updated.names, strict=True) if id(o) not in self.alias_ids]
        if len(keep) == len(updated.names):
            return updated
        if not keep:
            return None
        keep[-1] = keep[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        if isinstance(updated, cst.ImportFrom):
            return updated.with_changes(names=keep)
        return updated.with_changes(names=keep)

    def drop_emptied(
        self, body: Sequence[cst.BaseStatement], footer: Sequence[cst.EmptyLine]
    ) -> tuple[list[cst.BaseStatement], list[cst.EmptyLine]]:
        """Remove emptied import lines; their comment lines move to the next statement (comments survive)."""
        result: list[cst.BaseStatement] = []
        carried: list[cst.EmptyLine] = []
        blanks: list[cst.EmptyLine] = []  # above removed lines without comments: the separation they had
        for statement in body:
            placeholder, trailing = self.emptied.get(id(statement), (None, None))
            if placeholder is statement and isinstance(statement, cst.SimpleStatementLine):
                # Blank lines and comments above the import stay where they were; a comment after it
                # gets its own line.
                if trailing is not None or any(line.comment is not None for line in statement.leading_lines):
                    carried.extend(statement.leading_lines)
                elif not carried:
                    blanks = max(blanks, list(statement.leading_lines), key=len)
                if trailing is not None:
                    carried.append(cst.EmptyLine(comment=trailing))
                continue
            if (carried or blanks) and isinstance(
                statement, (cst.SimpleStatementLine, cst.BaseCompoundStatement)
            ):
                leading = [*carried, *statement.leading_lines]
                if not carried:
                    leading = with_blank_lines(statement.leading_lines, blanks)
                result.append(statement.with_changes(leading_lines=leading))
                carried, blanks = [], []
            else:
                result.append(statement)
        return result, [*carried, *footer]


class PrunesImports:
    """Mixin for a rule that drops the aliases in ``self.pruner`` at module level (set in ``visit_Module``).

    Put it before :class:`~codemods.rules.base.PoolshiftRule` in the bases so its ``leave_*`` hooks win.
    """

    pruner: ImportPruner

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        return self.pruner.prune_line(original_node, updated_node)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        body, footer = self.pruner.drop_emptied(updated_node.body, updated_node.footer)
        return updated_node.with_changes(body=body, footer=footer)


class PrunesImportsInBlocks(PrunesImports):
    """:class:`PrunesImports`, plus emptied import lines inside indented blocks (functions, ``if``, ``try``).

    A block left with no statement gets ``pass``. ``rewrite_block`` lets a rule replace statements of a
    block first, while emptied imports are still placeholders and indices on the original body are exact.
    """

    def rewrite_block(
        self, original_node: cst.IndentedBlock, body: list[cst.BaseStatement]
    ) -> list[cst.BaseStatement]:
        return body

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        rewritten = self.rewrite_block(original_node, list(updated_node.body))
        body, footer = self.pruner.drop_emptied(rewritten, updated_node.footer)
        if not body:
            body = [cst.SimpleStatementLine(body=[cst.Pass()])]
        return updated_node.with_changes(body=body, footer=footer)
