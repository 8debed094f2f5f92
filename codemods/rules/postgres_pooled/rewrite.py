"""Building the ``with get_pooled_connection(helper) as conn:`` statement for a proven seed.

The proof (:mod:`~codemods.rules.postgres_pooled.seed_proof`) decides and records a :class:`SeedPlan`; this
module only assembles the new statement from the old ones, keeping every comment of the removed lines and
the ``except`` blocks minus the leading ``conn.rollback()`` calls the pooled block already made.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from codemods.cst.literals import MISSING, literal
from codemods.cst.syntax import comments_in, suite_statements
from codemods.rules.postgres_pooled.seed_proof import SeedPlan, is_bare_raise


def apply_plans(
    plans: Sequence[SeedPlan], body: list[cst.BaseStatement], pooled_call: str
) -> list[cst.BaseStatement]:
    """Replace each proven seed (2 or 3 statements) by its rewrite, bottom-up so indices stay valid.

    The rule runs this in ``leave_IndentedBlock`` *before* emptied import lines are dropped: they are still
    placeholders then, so the indices recorded on the original body are exact.
    """
    for plan in sorted(plans, key=lambda p: p.index, reverse=True):
        body[plan.index : plan.index + plan.length] = [rewrite_seed(body, plan, pooled_call)]
    return body


def rewrite_seed(body: list[cst.BaseStatement], plan: SeedPlan, pooled_call: str) -> cst.BaseStatement:
    """The seed's replacement: a ``with`` statement, inside the ``try`` when the seed had handlers."""
    if plan.straight:
        return _rewrite_straight_line(body, plan, pooled_call)
    first, attempt = body[plan.index], body[plan.index + plan.length - 1]
    assert isinstance(first, cst.SimpleStatementLine)
    assert isinstance(attempt, cst.Try)
    assert isinstance(attempt.body, cst.IndentedBlock)  # SeedProof refuses one-line try bodies
    block = attempt.body
    more_items: list[cst.WithItem] = []
    if plan.with_conn_body:
        inner = suite_statements(block)[0]
        assert isinstance(inner, cst.With)
        assert isinstance(inner.body, cst.IndentedBlock)
        # The `try:` line's trailing comment stays on the line that replaces it.
        block = inner.body.with_changes(header=block.header)
        more_items = list(inner.items[1:])  # `with conn, conn.cursor() as cur:` keeps its cursor
    # The helper, spelled as the seed called it: the block borrows from the helper's own pool.
    with_node = _pooled_with(first, plan, pooled_call, more_items, block)
    carried = [cst.EmptyLine(comment=cst.Comment(text)) for text in plan.comments]
    handlers = [
        _drop_rollbacks(handler, plan.drop_rollbacks.get(position, 0))
        for position, handler in enumerate(attempt.handlers)
    ]
    # `except ...: raise` at the end re-raises what it caught, as if it were not there (one earlier in
    # the list stays: it keeps the exceptions it catches from the handlers after it).
    while handlers and is_bare_raise(suite_statements(handlers[-1].body)):
        carried.extend(cst.EmptyLine(comment=cst.Comment(text)) for text in comments_in([handlers.pop()]))
    if not handlers:
        leading = [*first.leading_lines, *attempt.leading_lines, *carried]
        return with_node.with_changes(leading_lines=leading)
    return attempt.with_changes(
        body=cst.IndentedBlock(
            body=[with_node.with_changes(body=block.with_changes(header=cst.TrailingWhitespace()))],
            header=block.header,
        ),
        handlers=handlers,
        finalbody=None,
        leading_lines=[*first.leading_lines, *carried, *attempt.leading_lines],
    )


def _pooled_with(
    first: cst.SimpleStatementLine,
    plan: SeedPlan,
    pooled_call: str,
    more_items: Sequence[cst.WithItem],
    block: cst.IndentedBlock,
) -> cst.With:
    """``with get_pooled_connection(<the helper, spelled as the seed called it>) as conn[, more]:``."""
    seed_call = first.body[0].value if isinstance(first.body[0], cst.Assign) else None
    assert isinstance(seed_call, cst.Call)
    return cst.With(
        items=[
            cst.WithItem(
                item=cst.Call(
                    func=cst.parse_expression(pooled_call), args=[cst.Arg(pooled_source(seed_call))]
                ),
                asname=cst.AsName(name=cst.Name(plan.conn)),
            ),
            *more_items,
        ],
        body=block,
    )


def _rewrite_straight_line(
    body: list[cst.BaseStatement], plan: SeedPlan, pooled_call: str
) -> cst.BaseStatement:
    """``conn = helper()`` [guard] BODY ``conn.close()`` -> the pooled ``with`` around BODY.

    The guard (dead code: the proof requires a helper that never returns None) and the close go; their
    comments go above the new statement. Blank lines between the call and BODY are dropped.
    """
    first = body[plan.index]
    assert isinstance(first, cst.SimpleStatementLine)
    statements = body[plan.body_start : plan.index + plan.length - 1]
    more_items: list[cst.WithItem] = []
    if plan.with_conn_body:
        inner = statements[0]
        assert isinstance(inner, cst.With)
        assert isinstance(inner.body, cst.IndentedBlock)  # SeedProof refuses a one-line `with conn:`
        more_items = list(inner.items[1:])
        block = inner.body.with_changes(header=cst.TrailingWhitespace())
    else:
        opening = statements[0]
        assert isinstance(opening, (cst.SimpleStatementLine, cst.BaseCompoundStatement))
        lines = list(opening.leading_lines)
        while lines and lines[0].comment is None:
            lines.pop(0)
        statements[0] = opening.with_changes(leading_lines=lines)
        block = cst.IndentedBlock(body=statements)
    carried = [cst.EmptyLine(comment=cst.Comment(text)) for text in plan.comments]
    with_node = _pooled_with(first, plan, pooled_call, more_items, block)
    return with_node.with_changes(leading_lines=[*first.leading_lines, *carried])


def plain_arguments(call: cst.Call) -> bool:
    """Arguments the pooled block can pass on unchanged: names and literals, no ``*``/``**``.

    ``lambda: helper(tenant)`` evaluates them when the block opens, right where the seed called the
    helper, with nothing run in between; anything else (a call, an attribute) could differ or raise.
    """
    return bool(call.args) and all(
        not argument.star and (isinstance(argument.value, cst.Name) or literal(argument.value) is not MISSING)
        for argument in call.args
    )


def pooled_source(seed_call: cst.Call) -> cst.BaseExpression:
    """What the pooled block calls: the helper itself, or ``lambda: helper(args)`` (see plain_arguments)."""
    if not seed_call.args:
        return seed_call.func
    return cst.Lambda(
        params=cst.Parameters(), body=seed_call.with_changes(whitespace_after_func=cst.SimpleWhitespace(""))
    )


def _drop_rollbacks(handler: cst.ExceptHandler, count: int) -> cst.ExceptHandler:
    """The handler minus its first ``count`` statements (``conn.rollback()``); ``pass`` if none remain."""
    if not count or not isinstance(handler.body, cst.IndentedBlock):
        return handler
    remaining = list(handler.body.body)[count:] or [cst.SimpleStatementLine(body=[cst.Pass()])]
    return handler.with_changes(body=handler.body.with_changes(body=remaining))
