"""The values of literal expressions, read without evaluating anything.

Rules and analyses compare literals (a ``":memory:"`` database, a ``SELECT`` text, an environment
variable's default); one answer to "what does this literal say" keeps them from disagreeing.
"""

from __future__ import annotations

from typing import Final

import libcst as cst

#: What :func:`literal` returns for an expression that is not a plain literal (``None`` is a literal).
MISSING: Final = object()


def literal_string(expression: cst.BaseExpression | None, *, decode_bytes: bool = False) -> str | None:
    """The text of a string literal (implicit concatenation included); None for anything else.

    A bytes literal counts only with ``decode_bytes`` (decoded as UTF-8, undecodable bytes replaced):
    an argument that may be a path accepts bytes, SQL text checked for writes does not.
    """
    if not isinstance(expression, (cst.SimpleString, cst.ConcatenatedString)):
        return None
    value = expression.evaluated_value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace") if decode_bytes else None
    return value


def literal(node: cst.BaseExpression | None) -> object:
    """The value of a string/integer/``None`` literal (an absent node counts as ``None``), else MISSING."""
    if node is None:
        return None
    if isinstance(node, cst.SimpleString):
        return node.evaluated_value
    if isinstance(node, cst.Integer):
        return node.evaluated_value
    if isinstance(node, cst.Name) and node.value == "None":
        return None
    return MISSING
