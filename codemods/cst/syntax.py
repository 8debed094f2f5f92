"""Small read-only questions about LibCST nodes that several analyses ask.

They live together so that "what is a docstring", "which statements does this block hold", "which
functions are module-level" or "which comments does this subtree hold" has one answer across the rules:
two slightly different answers would let two rules disagree about the same code.
"""

from __future__ import annotations

from collections.abc import Iterable

import libcst as cst


def parse_or_none(source: str) -> cst.Module | None:
    """The parsed module, or None when it does not parse."""
    try:
        return cst.parse_module(source)
    except Exception:  # a file that does not parse is reported by the transform, not by an analysis
        return None


def module_level_functions(module: cst.Module) -> Iterable[cst.FunctionDef]:
    """Functions defined at module level, including inside module-level ``if``/``try`` blocks."""
    pending: list[cst.CSTNode] = list(module.body)
    while pending:
        statement = pending.pop(0)
        if isinstance(statement, cst.FunctionDef):
            yield statement
        elif isinstance(statement, (cst.If, cst.Try)):
            pending.extend(_block_statements(statement))


def _block_statements(node: cst.CSTNode) -> list[cst.CSTNode]:
    found: list[cst.CSTNode] = []
    for child in node.children:
        if isinstance(child, cst.IndentedBlock):
            found.extend(child.body)
        elif isinstance(child, (cst.If, cst.Else, cst.ExceptHandler, cst.Finally)):
            found.extend(_block_statements(child))
    return found


def suite_statements(block: cst.BaseSuite) -> list[cst.BaseStatement]:
    """A block's statements; a one-line suite (``if x: y``) counts as one line, so no analysis skips it."""
    if isinstance(block, cst.IndentedBlock):
        return list(block.body)
    assert isinstance(block, cst.SimpleStatementSuite)
    return [cst.SimpleStatementLine(body=block.body)]


def strip_docstring(body: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
    """``body`` without a leading docstring."""
    if body and isinstance(body[0], cst.SimpleStatementLine) and len(body[0].body) == 1:
        small = body[0].body[0]
        if isinstance(small, cst.Expr) and isinstance(
            small.value, (cst.SimpleString, cst.ConcatenatedString)
        ):
            return body[1:]
    return body


def has_parameters(params: cst.Parameters) -> bool:
    """Whether a ``def`` takes any parameter at all (``*args``/``**kwargs`` included)."""
    return bool(
        params.params
        or params.posonly_params
        or params.kwonly_params
        or not isinstance(params.star_arg, cst.MaybeSentinel)
        or params.star_kwarg is not None
    )


def simple_assignment(statement: cst.BaseStatement) -> tuple[str, cst.BaseExpression] | None:
    """(name, value) for a line holding exactly ``name = value``; None for anything else."""
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return None
    small = statement.body[0]
    if (
        isinstance(small, cst.Assign)
        and len(small.targets) == 1
        and isinstance(small.targets[0].target, cst.Name)
    ):
        return small.targets[0].target.value, small.value
    return None


def code_of(node: cst.CSTNode) -> str:
    """The node's source on one line with whitespace runs folded, for messages in the report."""
    return " ".join(cst.Module([]).code_for_node(node).split())


def mentions(node: cst.CSTNode, names: set[str]) -> bool:
    """Whether any ``Name`` in the subtree spells one of ``names`` (a syntactic, scope-blind check)."""

    class Finder(cst.CSTVisitor):
        found = False

        def visit_Name(self, name: cst.Name) -> None:
            if name.value in names:
                self.found = True

    finder = Finder()
    node.visit(finder)
    return finder.found


class _CommentCollector(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.comments: list[str] = []

    def visit_Comment(self, node: cst.Comment) -> None:
        self.comments.append(node.value)


def comments_in(nodes: Iterable[cst.CSTNode]) -> list[str]:
    """The text of every comment inside ``nodes``, in source order (so a rewrite can carry them over)."""
    collector = _CommentCollector()
    for node in nodes:
        node.visit(collector)
    return collector.comments
