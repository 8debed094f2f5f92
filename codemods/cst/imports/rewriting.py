"""Editing import statements for the redirect rules (PS201, PS301) without dropping comments.

A rewrite that moves ``connect`` out of ``from sqlite3 import connect, Row  # driver`` or removes an
``import sqlite3`` that became unused must keep the user's comments and the layout of parenthesized
imports. LibCST's ``RemoveImportsVisitor`` drops a removed line's comments, hence
:class:`CommentKeepingRemoveImports`; the small helpers build the replacement nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import RemoveImportsVisitor
from libcst.helpers import get_full_name_for_node

from codemods.cst.syntax import comments_in


def trailing_comment_of(nodes: Iterable[cst.CSTNode]) -> cst.TrailingWhitespace:
    """The comments inside ``nodes`` as one trailing comment, so moving a name never drops its comment."""
    comments = comments_in(nodes)
    if not comments:
        return cst.TrailingWhitespace()
    text = " ".join(comment.lstrip("# ").rstrip() for comment in comments)
    return cst.TrailingWhitespace(whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(f"# {text}"))


def closing_comma(
    kept: cst.Comma | cst.MaybeSentinel, removed: cst.Comma | cst.MaybeSentinel
) -> cst.Comma | cst.MaybeSentinel:
    """The comma of a parenthesized import's new last name: its own comment, the old last line's indent.

    Inside parentheses each name's comment lives in its comma, and the indentation of the closing
    parenthesis lives in the last name's comma; keep the first and take the second from the removed name.
    """
    if not isinstance(kept, cst.Comma) or not isinstance(removed, cst.Comma):
        return kept
    own, closing = kept.whitespace_after, removed.whitespace_after
    if isinstance(own, cst.ParenthesizedWhitespace) and isinstance(closing, cst.ParenthesizedWhitespace):
        return kept.with_changes(
            whitespace_after=own.with_changes(indent=closing.indent, last_line=closing.last_line)
        )
    return kept


def dotted(name: str) -> cst.Attribute | cst.Name:
    """``"a.b.c"`` as an expression node."""
    head, _, last = name.rpartition(".")
    if not head:
        return cst.Name(last)
    return cst.Attribute(value=dotted(head), attr=cst.Name(last))


class CommentKeepingRemoveImports(RemoveImportsVisitor):
    """LibCST's RemoveImportsVisitor, except that a removed import line's comments survive.

    The stock visitor drops a whole ``import sqlite3  # driver`` line, with the comment lines above it.
    Here those comments (the trailing one as a line of its own) are prepended to the next statement of the
    same block, or become the block's footer when nothing follows. The blank lines that separated a removed
    line from the code above it still separate the next statement, when it had none of its own (``x()``,
    blank line, ``import sqlite3``, ``import json``: ``import json`` stays apart from ``x()``).
    """

    def __init__(
        self, context: CodemodContext, unused_imports: Sequence[tuple[str, str | None, str | None]]
    ) -> None:
        super().__init__(context, unused_imports)
        self._emptied: dict[cst.BaseStatement, list[cst.EmptyLine]] = {}

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        if original_node.body and not updated_node.body:
            # LibCST drops an emptied line when it rebuilds the enclosing body; remember its comments.
            self._emptied[original_node] = _comment_lines(original_node)
        return updated_node

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        body, left_over = self._carry_comments(original_node.body, updated_node.body)
        return updated_node.with_changes(body=body, footer=[*left_over, *updated_node.footer])

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        body, left_over = self._carry_comments(original_node.body, updated_node.body)
        return updated_node.with_changes(body=body, footer=[*left_over, *updated_node.footer])

    def _carry_comments(
        self, original: Sequence[cst.BaseStatement], updated: Sequence[cst.BaseStatement]
    ) -> tuple[list[cst.BaseStatement], list[cst.EmptyLine]]:
        """Pair surviving statements with their originals and hand each one the comments removed before it."""
        survivors = [statement for statement in original if statement not in self._emptied]
        if len(survivors) != len(updated):
            return list(updated), []  # not a shape this visitor produced: change nothing
        body: list[cst.BaseStatement] = []
        pending: list[cst.EmptyLine] = []
        remaining = iter(updated)
        for statement in original:
            if statement in self._emptied:
                removed = self._emptied[statement]
                if any(line.comment for line in [*pending, *removed]):
                    pending += removed
                else:  # blank lines only: the widest separation, not their sum
                    pending = max(pending, removed, key=len)
                continue
            new_statement = next(remaining)
            if pending and isinstance(new_statement, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
                leading = [*pending, *new_statement.leading_lines]
                if not any(line.comment for line in pending):
                    leading = with_blank_lines(new_statement.leading_lines, pending)
                new_statement = new_statement.with_changes(leading_lines=leading)
                pending = []
            body.append(new_statement)
        return body, [line for line in pending if line.comment is not None]


def removal_batches(
    removals: Iterable[tuple[str, str | None, str | None]],
) -> list[list[tuple[str, str | None, str | None]]]:
    """Split removals so no batch names one module under two aliases.

    RemoveImportsVisitor keeps one alias per module (a dict), so ``import sqlite3`` and a function's
    ``import sqlite3 as driver`` in one batch would leave one of them behind.
    """
    batches: list[list[tuple[str, str | None, str | None]]] = []
    for removal in dict.fromkeys(removals):
        module, obj, _ = removal
        for batch in batches:
            if obj is not None or all(other[0] != module or other[1] is not None for other in batch):
                batch.append(removal)
                break
        else:
            batches.append([removal])
    return batches


def with_blank_lines(
    leading: Sequence[cst.EmptyLine], blanks: Sequence[cst.EmptyLine]
) -> list[cst.EmptyLine]:
    """``leading`` lines of a statement that follows removed ones whose only lines above were ``blanks``."""
    if leading and leading[0].comment is None:
        return list(leading)  # it is already set apart from what precedes it
    return [*blanks, *leading]


def _comment_lines(line: cst.SimpleStatementLine) -> list[cst.EmptyLine]:
    """The lines above ``line`` (comments, and the blank lines that set it apart from the code above) and
    its trailing comment as a line of its own."""
    lines = list(line.leading_lines)
    trailing = line.trailing_whitespace.comment
    if trailing is not None:
        lines.append(cst.EmptyLine(comment=trailing))
    return lines


class ImportNextToNested(cst.CSTTransformer):
    """Adds ``import <module>`` right after each ``import`` inside a block (not at the module's top
    level) that binds one of ``imports`` ((module, obj, alias), as RemoveImportsVisitor names them).

    A driver imported conditionally (``if URL: import psycopg2`` / ``else: import sqlite3``) or lazily
    (in a function) keeps its drop-in imported the same way; the original import is then removed if
    nothing else uses it, without leaving ``pass`` behind.
    """

    def __init__(self, imports: Iterable[tuple[str, str | None, str | None]], module: str) -> None:
        super().__init__()
        self._bound = {(name, alias) for name, obj, alias in imports if obj is None}
        self._module = module
        self._depth = 0

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        self._depth += 1

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        self._depth -= 1
        return updated_node

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine | cst.FlattenSentinel[cst.SimpleStatementLine]:
        if not self._depth or not any(self._binds(statement) for statement in updated_node.body):
            return updated_node
        new_line = cst.SimpleStatementLine(
            body=[cst.Import(names=[cst.ImportAlias(name=dotted(self._module))])]
        )
        return cst.FlattenSentinel([updated_node, new_line])

    def _binds(self, statement: cst.BaseSmallStatement) -> bool:
        if not isinstance(statement, cst.Import):
            return False
        for alias in statement.names:
            name = get_full_name_for_node(alias.name)
            asname = alias.asname.name if alias.asname is not None else None
            alias_name = asname.value if isinstance(asname, cst.Name) else None
            if (name, alias_name) in self._bound:
                return True
        return False


class KnownUnusedImports(CommentKeepingRemoveImports):
    """:class:`CommentKeepingRemoveImports` for removals already known to be unused
    (:func:`~codemods.cst.imports.pruning.unused_after_calls_rewritten`): every import matching them
    goes, with the same handling of comments and emptied blocks, without resolving the new tree's scopes
    (a second full analysis of the module), and without entering lines that import nothing. Apply it with
    ``tree.visit(...)``."""

    def visit_Module(self, node: cst.Module) -> None:
        self._unused_imports = {}

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> bool:
        return any(isinstance(statement, (cst.Import, cst.ImportFrom)) for statement in node.body)

    def visit_Import(self, node: cst.Import) -> bool:
        self._unused_imports.update(dict.fromkeys(node.names, node))
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        if not isinstance(node.names, cst.ImportStar):
            self._unused_imports.update(dict.fromkeys(node.names, node))
        return False
