"""Imports a rewrite left unused but must keep, marked so the user's linter does not remove them.

A test that patches ``"app.db.psycopg2.connect"`` reaches the driver through ``app.db``'s own
``import psycopg2``: the rewrite keeps that import although nothing in the module reads it any more
(:class:`~codemods.rules._redirect.RedirectCallRule`). Left as is, ``ruff check`` (or flake8) reports it
as unused (F401) and ``--fix`` deletes it, which breaks the test again; so its line says why it stays.
"""

from __future__ import annotations

from collections.abc import Collection

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import GatherExportsVisitor
from libcst.metadata import Assignment, GlobalScope, MetadataWrapper, ScopeProvider

#: What the kept import's line says: the code pyflakes, flake8 and ruff know, then why.
KEPT_COMMENT = "# noqa: F401  # kept by poolshift: a test patches a path through it"
_IMPORTS = (cst.Import, cst.ImportFrom)


def mark_kept_imports(module: cst.Module, names: Collection[str]) -> cst.Module:
    """``module`` with :data:`KEPT_COMMENT` on the line of each module-level import binding one of
    ``names`` that nothing in the module reads (or exports through ``__all__``) any more."""
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    scope = wrapper.resolve(ScopeProvider).get(module)
    if not isinstance(scope, GlobalScope):
        return module
    exported = _exported(module)
    unused: set[cst.CSTNode] = set()
    for name in names:
        if name in exported or name not in scope:
            continue
        assignments = list(scope[name])
        if any(assignment.references for assignment in assignments):
            continue
        unused.update(
            assignment.node
            for assignment in assignments
            if isinstance(assignment, Assignment) and isinstance(assignment.node, _IMPORTS)
        )
    if not unused:
        return module
    return module.visit(_MarkLines(unused))


def _exported(module: cst.Module) -> set[str]:
    gatherer = GatherExportsVisitor(CodemodContext())
    module.visit(gatherer)
    return set(gatherer.explicit_exported_objects)


class _MarkLines(cst.CSTTransformer):
    def __init__(self, imports: set[cst.CSTNode]) -> None:
        super().__init__()
        self._imports = imports

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        if not any(statement in self._imports for statement in original_node.body):
            return updated_node
        trailing = updated_node.trailing_whitespace
        comment = trailing.comment.value if trailing.comment is not None else ""
        if "noqa" in comment:
            return updated_node  # the user's own directive stands
        marked = f"{comment}  {KEPT_COMMENT}" if comment else KEPT_COMMENT
        return updated_node.with_changes(
            trailing_whitespace=trailing.with_changes(
                whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(marked)
            )
        )
