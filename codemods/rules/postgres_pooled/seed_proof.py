"""PS101's proof about one seed pattern as a whole, and the plan for rewriting it.

:class:`SeedProof` checks what surrounds the body (which :mod:`~codemods.rules.postgres_pooled.body_proof`
checks): the shape ``conn = helper()`` / ``if not conn: return ...`` / ``try: ... finally: conn.close()``,
that the pooled block's exceptions reach an ``except`` doing exactly what the ``None`` guard did, that no
``except`` catches what escapes the helper (it went to the caller before), that ``except`` blocks (which
now run after the connection went back to the pool) do not touch it, and that nothing before or after the
seed keeps it. The result is a :class:`SeedPlan` for the rewrite, or a
:class:`~codemods.rules.postgres_pooled.body_proof.Refusal` with the reason.
"""

from __future__ import annotations

import ast
import importlib
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import libcst as cst

from codemods.cst.syntax import code_of, comments_in, mentions, simple_assignment, suite_statements
from codemods.legacy_helpers.escapes import Escapes
from codemods.rules.postgres_pooled.body_proof import BodyProof, Refusal

# What `with get_pooled_connection()` raises where the legacy helper returned None: a connection failure,
# and (new with a pool) an exhausted pool. Named, not imported: they are resolved lazily (see
# _exception_class) so that importing the rules stays cheap.
_POOLED_FAILURES: dict[str, str] = {
    "a connection failure (psycopg2.OperationalError)": "psycopg2.OperationalError",
    "an exhausted pool (PoolTimeoutError)": "db_utils.PoolTimeoutError",
}
# Exception names that may be resolved by importing them: the driver, SQLAlchemy, builtins and the shim.
_IMPORTABLE_ROOTS = frozenset({"psycopg2", "sqlalchemy", "builtins", "db_utils"})


def _exception_class(name: str) -> type | None:
    """The class a qualified name denotes, for the few packages whose classes the rule may import.

    Resolving the real class (rather than comparing names) is what makes aliases such as
    ``psycopg2.errors.OperationalError`` or ``psycopg2._psycopg.Error`` come out right.
    """
    module_name, _, attribute = name.rpartition(".")
    if module_name.split(".")[0] not in _IMPORTABLE_ROOTS:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    value = getattr(module, attribute, None)
    return value if isinstance(value, type) else None


@dataclass
class SeedPlan:
    """How to rewrite one proven seed: statements [index, index+length) of the function body become one.

    ``length`` is 3 (call, guard, try) or 2 (call, try: no guard, or none needed); for the straight-line
    form (``straight``) it runs from the call to the ``conn.close()`` statement, both included, and BODY is
    the statements in between, from ``body_start`` (after the guard, if any).
    """

    index: int
    conn: str
    with_conn_body: bool  # BODY was a single `with conn[, more]:` block: its body moves up one level
    length: int = 3
    straight: bool = False  # `conn = helper()` ... `conn.close()` at one level, no try/finally
    body_start: int = 0
    drop_rollbacks: dict[int, int] = field(default_factory=dict)  # handler index -> leading rollbacks
    comments: list[str] = field(default_factory=list)


def _guard_kind(node: cst.BaseStatement, conn: str) -> bool:
    """``if not conn:`` or ``if conn is None:`` without else."""
    if not isinstance(node, cst.If) or node.orelse is not None:
        return False
    test = node.test
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        return isinstance(test.expression, cst.Name) and test.expression.value == conn
    return (
        isinstance(test, cst.Comparison)
        and isinstance(test.left, cst.Name)
        and test.left.value == conn
        and len(test.comparisons) == 1
        and isinstance(test.comparisons[0].operator, cst.Is)
        and isinstance(test.comparisons[0].comparator, cst.Name)
        and test.comparisons[0].comparator.value == "None"
    )


def _is_method_call_statement(node: cst.BaseStatement, name: str, method: str) -> bool:
    if not isinstance(node, cst.SimpleStatementLine) or len(node.body) != 1:
        return False
    small = node.body[0]
    return (
        isinstance(small, cst.Expr)
        and isinstance(small.value, cst.Call)
        and not small.value.args
        and isinstance(small.value.func, cst.Attribute)
        and isinstance(small.value.func.value, cst.Name)
        and small.value.func.value.value == name
        and small.value.func.attr.value == method
    )


def _same_statements(first: Sequence[cst.BaseStatement], second: Sequence[cst.BaseStatement]) -> bool:
    """Same code, ignoring comments and layout (compared as Python ASTs)."""

    def dump(statements: Sequence[cst.BaseStatement]) -> str:
        code = "".join(cst.Module([]).code_for_node(s) for s in statements)
        return ast.dump(ast.parse(textwrap.dedent(code)))

    try:
        return dump(first) == dump(second)
    except SyntaxError:
        return False


@dataclass(frozen=True)
class HelperFacts:
    """What the helper's contract analysis showed (see :mod:`codemods.legacy_helpers.raising_helper`).

    ``never_none``: it returns a connection or raises, never None, so the seed's guard is dead code and
    its failure reaches the caller as an exception in both forms. ``runs_only_connect``: it cannot raise a
    statement's error, so an ``except IntegrityError``/``DataError`` of the seed never catches it.
    ``escapes``: what a helper that returns None on a failed connect still lets out; the seed's handlers
    must not catch any of it.
    """

    never_none: bool = False
    runs_only_connect: bool = False
    #: What escapes a helper that returns None (see :mod:`codemods.legacy_helpers.escapes`); None when
    #: not stated (the helper breaks its contract, or was not analysed).
    escapes: Escapes | None = None


# Exceptions that only a statement the server ran can raise (SQLSTATE classes 22 and 23): a helper that
# runs nothing but the connect never raises them.
_STATEMENT_ERRORS = ("psycopg2.IntegrityError", "psycopg2.DataError")


class SeedProof:
    """Decides one candidate ``conn = helper()`` at ``function.body[index]``: a plan or a Refusal."""

    def __init__(
        self,
        function: cst.FunctionDef,
        index: int,
        conn: str,
        line_of: Callable[[cst.CSTNode], int],
        names_of: Callable[[cst.CSTNode], set[str]],
        *,
        helper: HelperFacts,
    ) -> None:
        self.function = function
        self.body = suite_statements(function.body)
        self.index = index
        self.conn = conn
        self.line_of = line_of
        self.names_of = names_of
        self.helper = helper

    def prove(self) -> SeedPlan:
        straight = self._straight_line()
        if straight is not None:
            return self._prove_straight_line(*straight)
        guard, attempt = self._shape()
        plan = SeedPlan(
            index=self.index, conn=self.conn, with_conn_body=False, length=2 if guard is None else 3
        )
        proof, inner_body = self._body_proof(suite_statements(attempt.body), plan)
        if proof.block(inner_body):
            proof.check_exit(attempt.body)  # falling off the end of the block is an exit too
        self._check_handlers(attempt, proof.tracked, plan)
        if self.helper.never_none:
            self._check_raising_helper(attempt, plan)
        elif guard is None:
            raise Refusal(
                "none-guard-differs",
                "there is no `if not conn:` guard and the helper is not shown to raise rather than return "
                "None; the legacy code fails differently",
            )
        else:
            self._check_guard(guard, attempt, plan)
            self._check_escapes(attempt, plan)
        self._check_surroundings(proof.tracked, plan)
        plan.comments = self._removed_comments(guard, attempt, plan)
        return plan

    def _straight_line(self) -> tuple[cst.If | None, int] | None:
        """(guard, index of the close) for ``conn = helper()`` [guard] ... ``conn.close()`` at one level.

        None when the call is followed by the seed's ``try``/``finally`` (that form is proven as before) or
        when no ``conn.close()`` statement follows at the call's level (the seed's shape refusal says what
        is missing).
        """
        start = self.index + 1
        guard: cst.If | None = None
        candidate = self.body[start] if start < len(self.body) else None
        if candidate is not None and _guard_kind(candidate, self.conn):
            assert isinstance(candidate, cst.If)
            guard = candidate
            start += 1
        if start < len(self.body) and isinstance(self.body[start], cst.Try):
            attempt = self.body[start]
            assert isinstance(attempt, cst.Try)
            if self._closes(attempt):
                return None
        for position in range(start, len(self.body)):
            if _is_method_call_statement(self.body[position], self.conn, "close"):
                return guard, position
        return None

    def _prove_straight_line(self, guard: cst.If | None, close_index: int) -> SeedPlan:
        """The straight-line form: everything between the call and its one close becomes the block.

        The legacy code closes the connection only when the body ends normally; an exception leaves its
        transaction open until the connection object is collected, and then rolled back. The pooled block
        rolls it back at once: the same data, sooner. Every normal exit (an early ``return`` included,
        which leaked the connection before) must have nothing uncommitted, as in the seed's ``try``.
        """
        close = self.body[close_index]
        assert isinstance(close, cst.SimpleStatementLine)
        assert isinstance(close.body[0], cst.Expr)
        for call in _close_calls(self.function, self.conn):
            if call is not close.body[0].value:
                raise Refusal(
                    "not-seed-pattern",
                    f"line {self.line_of(call)}: another `{self.conn}.close()` besides the one at line "
                    f"{self.line_of(close)}; without try/finally, the rule rewrites only a connection closed "
                    "once, by a statement at the level of the call",
                )
        if guard is not None and self._guard_uses_conn(guard):
            raise Refusal("not-seed-pattern", "the guard's body uses the connection")
        if not self.helper.never_none:
            if guard is not None:
                raise Refusal(
                    "not-seed-pattern",
                    "the connection is closed without try/finally: with a helper that may return None, the "
                    "guard's answer needs `try: ... except <what the guard does> ... finally: conn.close()`, "
                    "the form the rule proves",
                )
            raise Refusal(
                "none-guard-differs",
                "there is no `if not conn:` guard and the helper is not shown to never return None (or its "
                "definition was not found): on None the legacy code fails with AttributeError at its first "
                f"`{self.conn}.<method>()`, where the pooled block raises OperationalError",
            )
        start = self.index + (2 if guard is not None else 1)
        inner = self.body[start:close_index]
        if not inner:
            raise Refusal("not-seed-pattern", "nothing runs between the call and `conn.close()`")
        plan = SeedPlan(
            index=self.index,
            conn=self.conn,
            with_conn_body=False,
            length=close_index - self.index + 1,
            straight=True,
            body_start=start,
        )
        proof, inner_body = self._body_proof(inner, plan)
        proof.returns_leak = True
        if proof.block(inner_body):
            proof.check_exit(close)  # reaching the close is the block's normal end
        self._check_surroundings(proof.tracked, plan)
        first = self.body[self.index]
        assert isinstance(first, cst.SimpleStatementLine)
        removed: list[cst.CSTNode] = [first.trailing_whitespace, *([guard] if guard else [])]
        if plan.with_conn_body:
            removed.extend(self._with_conn_lines(inner[0]))
        removed.append(close)  # in source order: the comments go above the new statement in this order
        plan.comments = comments_in(removed)
        return plan

    def _body_proof(
        self, inner: list[cst.BaseStatement], plan: SeedPlan
    ) -> tuple[BodyProof, list[cst.BaseStatement]]:
        """The proof for the pooled block's body, and the statements it must prove: a body that is one
        ``with conn[, more]:`` is folded into the pooled block (psycopg2 commits at its end, as the pooled
        block does), so its own body is what is proven."""
        if len(inner) != 1 or not isinstance(inner[0], cst.With) or not self._is_with_conn(inner[0]):
            return BodyProof(self.conn, self.line_of, commits_on_exit=False), inner
        folded = inner[0]
        if not isinstance(folded.body, cst.IndentedBlock):
            raise Refusal("not-seed-pattern", "one-line blocks are left alone")
        plan.with_conn_body = True
        proof = BodyProof(self.conn, self.line_of, commits_on_exit=True)
        # `with conn, conn.cursor() as cur:`: the items after `conn` stay on the pooled `with`.
        if len(folded.items) > 1:
            return proof, [folded.with_changes(items=folded.items[1:])]
        return proof, suite_statements(folded.body)

    @property
    def needs_none_contract(self) -> bool:
        """Whether the rule must still show that the helper returns None rather than raising."""
        return not self.helper.never_none

    def _shape(self) -> tuple[cst.If | None, cst.Try]:
        rest = self.body[self.index + 1 : self.index + 3]
        guard: cst.If | None = None
        attempt: cst.BaseStatement = rest[0] if rest else self.body[self.index]
        if isinstance(attempt, cst.Try) and self._closes(attempt):
            pass  # no guard: only a helper that never returns None qualifies
        elif len(rest) < 2 or not isinstance(rest[0], cst.If) or not _guard_kind(rest[0], self.conn):
            # Say what is missing for this helper: one that never returns None needs no guard.
            expected = "" if self.helper.never_none else "`if not conn: return ...`, then "
            # A helper that never returns None also has the straight-line form (see _straight_line).
            straight = (
                " (or by statements ending in `conn.close()` at its level)" if self.helper.never_none else ""
            )
            raise Refusal(
                "not-seed-pattern",
                f"the call is not followed by {expected}`try: ... finally: conn.close()`{straight}",
            )
        else:
            guard, attempt = rest[0], rest[1]
        if guard is not None and self._guard_uses_conn(guard):
            raise Refusal("not-seed-pattern", "the guard's body uses the connection")
        if not isinstance(attempt, cst.Try) or not self._closes(attempt):
            raise Refusal("not-seed-pattern", "the guard is not followed by `try: ... finally: conn.close()`")
        if attempt.orelse is not None:
            raise Refusal("not-seed-pattern", "the try has an else clause")
        inner = suite_statements(attempt.body)
        if not isinstance(attempt.body, cst.IndentedBlock) or (
            len(inner) == 1
            and isinstance(inner[0], cst.With)
            and not isinstance(inner[0].body, cst.IndentedBlock)
        ):
            raise Refusal("not-seed-pattern", "one-line blocks are left alone")
        return guard, attempt

    def _closes(self, attempt: cst.Try) -> bool:
        if attempt.finalbody is None:
            return False
        final = suite_statements(attempt.finalbody.body)
        return len(final) == 1 and _is_method_call_statement(final[0], self.conn, "close")

    def _is_with_conn(self, node: cst.With) -> bool:
        """``with conn:`` or ``with conn, <more items>:`` (psycopg2 commits at its end)."""
        return (
            isinstance(node.items[0].item, cst.Name)
            and node.items[0].item.value == self.conn
            and node.items[0].asname is None
            and node.asynchronous is None
        )

    def _check_handlers(self, attempt: cst.Try, tracked: set[str], plan: SeedPlan) -> None:
        """Handlers will run after the connection went back to the pool: they may not touch it.

        Leading ``conn.rollback()`` calls are dropped: the pooled block already rolled back by then.
        """
        for position, handler in enumerate(attempt.handlers):
            statements = suite_statements(handler.body)
            leading = 0
            while leading < len(statements) and _is_method_call_statement(
                statements[leading], self.conn, "rollback"
            ):
                leading += 1
            if any(mentions(statement, tracked) for statement in statements[leading:]):
                raise Refusal(
                    "conn-used-after-close",
                    f"line {self.line_of(handler)}: the except block uses the connection, which the pooled "
                    "block has already returned when it runs",
                )
            if leading:
                plan.drop_rollbacks[position] = leading

    def _check_guard(self, guard: cst.If, attempt: cst.Try, plan: SeedPlan) -> None:
        guard_body = suite_statements(guard.body)
        last = guard_body[-1] if guard_body else None
        ends_in_return = isinstance(last, cst.SimpleStatementLine) and isinstance(last.body[-1], cst.Return)
        if not ends_in_return:
            raise Refusal(
                "none-guard-differs",
                "the guard does not end in `return`; the pooled block raises OperationalError instead",
            )
        for failure, class_name in _POOLED_FAILURES.items():
            failure_class = _exception_class(class_name)
            if failure_class is None:
                raise Refusal("none-guard-differs", f"cannot import {class_name} to check the except blocks")
            self._check_failure_path(failure, failure_class, guard, attempt, plan)

    def _check_failure_path(
        self, failure: str, failure_class: type, guard: cst.If, attempt: cst.Try, plan: SeedPlan
    ) -> None:
        """The first handler that catches ``failure`` must do exactly what the guard did."""
        guard_body = suite_statements(guard.body)
        for position, handler in enumerate(attempt.handlers):
            catches = self._catches(handler, failure_class)
            if catches is None:
                raise Refusal(
                    "none-guard-differs",
                    f"line {self.line_of(handler)}: cannot tell whether this except catches {failure}",
                )
            if not catches:
                continue
            body = suite_statements(handler.body)[plan.drop_rollbacks.get(position, 0) :]
            uses_name = handler.name is not None and mentions(
                cst.IndentedBlock(body=body), {code_of(handler.name.name)}
            )
            if not uses_name and _same_statements(body, guard_body):
                return
            raise Refusal(
                "none-guard-differs",
                f"line {self.line_of(handler)}: on {failure} the pooled block runs this except block, "
                f"which differs from the guard (`{code_of(guard.body)}`)",
            )
        raise Refusal(
            "none-guard-differs",
            f"no except block of the try catches {failure}, which the pooled block raises where the "
            f"legacy code took the guard (`{code_of(guard.body)}`)",
        )

    def _check_raising_helper(self, attempt: cst.Try, plan: SeedPlan) -> None:
        """The helper raises where it cannot connect; inside the pooled block the seed's handlers see that.

        Each handler must leave the helper's exception as it was: it re-raises it (``raise`` alone, once
        the leading ``conn.rollback()`` calls are dropped), or it catches only errors of a statement the
        server ran (``IntegrityError``, ``DataError``) while the helper runs nothing but its connect.
        """
        for position, handler in enumerate(attempt.handlers):
            body = suite_statements(handler.body)[plan.drop_rollbacks.get(position, 0) :]
            if is_bare_raise(body):
                continue
            if self.helper.runs_only_connect and self._only_statement_errors(handler):
                continue
            caught = f"except {code_of(handler.type)}" if handler.type is not None else "bare except"
            raise Refusal(
                "helper-may-raise",
                f"line {self.line_of(handler)}: the helper raises when it cannot connect; called inside "
                f"the pooled block, its exception could reach this `{caught}`, which did not see it before",
            )

    def _check_escapes(self, attempt: cst.Try, plan: SeedPlan) -> None:
        """What escapes the helper went to the caller, past the seed's ``try``; inside the pooled block it
        passes the seed's handlers, so none of them may catch it (``raise`` alone leaves it as it was)."""
        escapes = self.helper.escapes
        if escapes is None or escapes.nothing:
            return
        for position, handler in enumerate(attempt.handlers):
            if is_bare_raise(suite_statements(handler.body)[plan.drop_rollbacks.get(position, 0) :]):
                continue
            types: list[cst.BaseExpression | None] = [*_types_of(handler)] or [None]  # None: bare except
            for node in types:
                caught = self._escape_caught(node, escapes)
                if caught is not None:
                    clause = f"except {code_of(handler.type)}" if handler.type is not None else "bare except"
                    raise Refusal(
                        "helper-error-escapes",
                        f"line {self.line_of(handler)}: `{clause}` would catch {caught}; that went to the "
                        "caller before (the helper ran before the seed's try), it would reach this except "
                        "block once the helper runs inside the pooled block",
                    )

    def _escape_caught(self, node: cst.BaseExpression | None, escapes: Escapes) -> str | None:
        """What of ``escapes`` an ``except <node>`` (None: bare) may catch, for the message; None: nothing."""
        if node is None:
            target: type | None = BaseException
            user_class = False
        else:
            names = self.names_of(node)
            name = next(iter(names)) if len(names) == 1 else "?"
            user_class = name != "?" and "." not in name  # a class of this module: no builtin's base
            target = None if user_class or name == "?" else _exception_class(name)
        for raised in escapes.raised:
            raised_class = _exception_class(raised)
            if raised_class is None or raised_class is BaseException:
                return "whatever the helper raises before its try or in its except blocks"
            # Exactly these classes are raised (os.environ[...]: KeyError): a class of this module is
            # no base of theirs; a class the rule cannot resolve may be.
            if not user_class and (target is None or issubclass(raised_class, target)):
                return f"the {raised.removeprefix('builtins.')} the helper may raise"
        caught = [c for c in (_exception_class(name) for name in escapes.caught) if c is not None]
        if BaseException in caught or (target is not None and any(issubclass(target, c) for c in caught)):
            return None
        returns_none_on = ", ".join(name.removeprefix("builtins.") for name in escapes.caught) or "nothing"
        return f"any exception the helper's try lets out (it returns None only on {returns_none_on})"

    def _only_statement_errors(self, handler: cst.ExceptHandler) -> bool:
        if handler.type is None:
            return False
        types = _types_of(handler)
        bases = tuple(_exception_class(name) for name in _STATEMENT_ERRORS)
        for node in types:
            names = self.names_of(node)
            if len(names) != 1:
                return False
            resolved = _exception_class(next(iter(names)))
            if resolved is None or not any(base is not None and issubclass(resolved, base) for base in bases):
                return False
        return True

    def _guard_uses_conn(self, guard: cst.If) -> bool:
        return any(mentions(statement, {self.conn}) for statement in suite_statements(guard.body))

    def _catches(self, handler: cst.ExceptHandler, failure_class: type) -> bool | None:
        """True/False, or None when a type cannot be resolved (the rule then refuses)."""
        if handler.type is None:
            return True
        types = _types_of(handler)
        verdicts = [self._type_catches(node, failure_class) for node in types]
        if any(verdict is True for verdict in verdicts):
            return True
        return None if any(verdict is None for verdict in verdicts) else False

    def _type_catches(self, node: cst.BaseExpression, failure_class: type) -> bool | None:
        names = self.names_of(node)
        if len(names) != 1:
            return None
        (name,) = names
        if name == "?":
            return None
        if "." not in name:
            return False  # a class defined in this module cannot be a base of the driver's errors
        resolved = _exception_class(name)
        if resolved is None:
            return None  # imported from the user's code: may be an alias of a catching class
        return issubclass(failure_class, resolved)

    def _check_surroundings(self, tracked: set[str], plan: SeedPlan) -> None:
        before, after = self.body[: self.index], self.body[self.index + plan.length :]
        for statement in before:
            if (
                isinstance(statement, cst.SimpleStatementLine)
                and any(isinstance(small, (cst.Global, cst.Nonlocal)) for small in statement.body)
                and mentions(statement, tracked)
            ):
                raise Refusal("conn-escapes-scope", f"line {self.line_of(statement)}: `{code_of(statement)}`")
            if _captures(statement, tracked):
                raise Refusal(
                    "conn-escapes-scope",
                    f"line {self.line_of(statement)}: a closure refers to the connection",
                )
        live = set(tracked)
        for statement in after:
            rebound = simple_assignment(statement)
            if rebound is not None and not mentions(rebound[1], live):
                live.discard(rebound[0])
                if not live:
                    return
                continue
            if mentions(statement, live):
                raise Refusal(
                    "conn-used-after-close",
                    f"line {self.line_of(statement)}: the connection (or a cursor) is used after the block",
                )

    def _removed_comments(self, guard: cst.If | None, attempt: cst.Try, plan: SeedPlan) -> list[str]:
        """Comments in the statements the rewrite removes; they are put above the new statement."""
        first = self.body[self.index]
        assert isinstance(first, cst.SimpleStatementLine)
        removed: list[cst.CSTNode] = [first.trailing_whitespace]
        if guard is not None:
            removed.append(guard)
        if attempt.finalbody is not None:
            removed.append(attempt.finalbody)
        if plan.with_conn_body:
            removed.extend(self._with_conn_lines(suite_statements(attempt.body)[0]))
        for position, count in plan.drop_rollbacks.items():
            removed.extend(suite_statements(attempt.handlers[position].body)[:count])
        return comments_in(removed)

    @staticmethod
    def _with_conn_lines(inner: cst.BaseStatement) -> list[cst.CSTNode]:
        """What the rewrite removes of a folded ``with conn:`` (its comments are carried over)."""
        assert isinstance(inner, cst.With)
        removed: list[cst.CSTNode] = [*inner.leading_lines, *inner.items[:1]]
        if isinstance(inner.body, cst.IndentedBlock):
            removed.append(inner.body.header)
        return removed


def _close_calls(function: cst.FunctionDef, conn: str) -> list[cst.Call]:
    """Every ``conn.close()`` call in the function, nested blocks and definitions included."""

    class Finder(cst.CSTVisitor):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[cst.Call] = []

        def visit_Call(self, node: cst.Call) -> None:
            func = node.func
            if (
                isinstance(func, cst.Attribute)
                and isinstance(func.value, cst.Name)
                and func.value.value == conn
                and func.attr.value == "close"
            ):
                self.found.append(node)

    finder = Finder()
    function.visit(finder)
    return finder.found


def _types_of(handler: cst.ExceptHandler) -> list[cst.BaseExpression]:
    """The classes an ``except`` names: ``except (A, B):`` -> [A, B]; none for a bare ``except``."""
    if handler.type is None:
        return []
    if isinstance(handler.type, cst.Tuple):
        return [element.value for element in handler.type.elements]
    return [handler.type]


def is_bare_raise(body: Sequence[cst.BaseStatement]) -> bool:
    """The block is ``raise`` alone: whatever it caught leaves unchanged."""
    if len(body) != 1 or not isinstance(body[0], cst.SimpleStatementLine) or len(body[0].body) != 1:
        return False
    small = body[0].body[0]
    return isinstance(small, cst.Raise) and small.exc is None


def _captures(statement: cst.CSTNode, names: set[str]) -> bool:
    class Finder(cst.CSTVisitor):
        found = False

        def visit_Lambda(self, node: cst.Lambda) -> None:
            self.found = self.found or mentions(node, names)

        def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
            self.found = self.found or mentions(node, names)

        def visit_ClassDef(self, node: cst.ClassDef) -> None:
            self.found = self.found or mentions(node, names)

    finder = Finder()
    statement.visit(finder)
    return finder.found
