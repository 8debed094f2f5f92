"""PS101's proof about the body of a seed's ``try``: nothing left uncommitted, the connection stays inside.

``with get_pooled_connection() as conn:`` commits on a clean exit where closing the legacy connection
rolled back, and hands the connection back to the pool at the end of the block. So every normal exit of
the body must have nothing uncommitted, and the connection and its cursors may be used only through
cursors, ``commit`` and ``rollback`` - never returned, stored, passed, yielded or captured. Anything the
proof does not understand raises :class:`Refusal` with a PS101 reason code: it is never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import libcst as cst

from codemods.cst.literals import literal_string
from codemods.cst.syntax import code_of, mentions, suite_statements
from codemods.rules.postgres_pooled.read_only_sql import is_read_only_sql

_CONN_METHODS_RESETTING = frozenset({"commit", "rollback"})
_CURSOR_SAFE_METHODS = frozenset(
    {"fetchone", "fetchmany", "fetchall", "close", "scroll", "mogrify", "setinputsizes", "setoutputsize"}
)
_CURSOR_WRITING_METHODS = frozenset(
    {"execute", "executemany", "callproc", "copy_from", "copy_to", "copy_expert"}
)
_CURSOR_ATTRIBUTES = frozenset(
    {
        "rowcount",
        "description",
        "lastrowid",
        "rownumber",
        "statusmessage",
        "query",
        "arraysize",
        "closed",
        "name",
    }
)


class Refusal(Exception):
    """The site stays legacy (PS102 applies); ``reason`` is a PS101 reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class BodyProof:
    """Walks the seed's ``try`` body: tracks uncommitted work and where ``conn``/its cursors go.

    The state is one bit, "clean" (nothing uncommitted since the last commit/rollback). It is merged
    conservatively at branches and loops; a ``return`` or the end of the body in a dirty state is an
    ``implicit-transaction``. Anything the proof does not understand is refused, never guessed.
    """

    def __init__(self, conn: str, line_of: Callable[[cst.CSTNode], int], *, commits_on_exit: bool) -> None:
        self.conn = conn
        self.cursors: set[str] = set()
        self.line_of = line_of
        # True inside a `with conn:` that wraps the whole body: every exit commits anyway.
        self.commits_on_exit = commits_on_exit
        self.clean = True
        self.dirtied = 0
        self.last_write: cst.CSTNode | None = None
        # The straight-line form (no try/finally) never closed the connection on an early `return`.
        self.returns_leak = False

    @property
    def tracked(self) -> set[str]:
        return {self.conn, *self.cursors}

    # -- statements -------------------------------------------------------------------------------

    def block(self, statements: Sequence[cst.BaseStatement]) -> bool:
        """Analyse statements in order; returns whether control can fall through the end."""
        return all(self.statement(statement) for statement in statements)

    def statement(self, node: cst.BaseStatement) -> bool:
        if isinstance(node, cst.SimpleStatementLine):
            return all(self.small(small) for small in node.body)
        if isinstance(node, cst.If):
            return self._if(node)
        if isinstance(node, (cst.For, cst.While)):
            return self._loop(node)
        if isinstance(node, cst.With):
            return self._with(node)
        if isinstance(node, cst.Try):
            return self._try(node)
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            if mentions(node, self.tracked):
                raise Refusal(
                    "conn-escapes-scope",
                    f"line {self.line_of(node)}: a nested definition captures the connection",
                )
            return True
        raise Refusal(
            "not-seed-pattern",
            f"line {self.line_of(node)}: `{type(node).__name__}` inside the block is not analysed",
        )

    def small(self, node: cst.BaseSmallStatement) -> bool:
        """One simple statement; False when it leaves the block (``return``/``raise``)."""
        if isinstance(node, (cst.Return, cst.Raise)):
            self._leave(node)
            return False
        if isinstance(node, cst.Expr):
            self.expression(node.value)
        elif isinstance(node, cst.Assign):
            self._assign(node)
        elif isinstance(node, (cst.AugAssign, cst.AnnAssign)):
            if node.value is not None:
                self.expression(node.value)
            self._store_target(node.target)
        elif isinstance(node, cst.Assert):
            self.expression(node.test)
        elif isinstance(node, (cst.Global, cst.Nonlocal, cst.Del)):
            if mentions(node, self.tracked):
                raise Refusal("unsupported-connection-use", f"line {self.line_of(node)}: `{code_of(node)}`")
        elif not isinstance(node, (cst.Pass, cst.Break, cst.Continue, cst.Import, cst.ImportFrom)):
            raise Refusal("not-seed-pattern", f"line {self.line_of(node)}: `{code_of(node)}` is not analysed")
        return True

    def _leave(self, node: cst.Return | cst.Raise) -> None:
        """A ``return`` is a normal exit (must be clean); a ``raise`` rolls back in both versions."""
        if isinstance(node, cst.Return):
            if node.value is not None:
                self.expression(node.value)
            self.check_exit(node)
            return
        for part in (node.exc, node.cause.item if node.cause else None):
            if part is not None:
                self.expression(part)

    def check_exit(self, node: cst.CSTNode) -> None:
        if not self.clean and not self.commits_on_exit:
            write = f" after the write at line {self.line_of(self.last_write)}" if self.last_write else ""
            legacy = (
                "the legacy code leaves the connection open there, and its work is rolled back when the "
                "connection is collected"
                if self.returns_leak and isinstance(node, cst.Return)
                else "closing the legacy connection rolls it back"
            )
            raise Refusal(
                "implicit-transaction",
                f"line {self.line_of(node)}: the block can end with uncommitted work{write}; {legacy}, the "
                "pooled block would commit it",
            )

    def _assign(self, node: cst.Assign) -> None:
        cursor = self._cursor_call(node.value)
        if cursor is not None and len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name):
            self._arguments(cursor)
            name = node.targets[0].target.value
            if name == self.conn:
                raise Refusal("unsupported-connection-use", f"line {self.line_of(node)}: `conn` is rebound")
            self.cursors.add(name)
            return
        self.expression(node.value)
        for target in node.targets:
            self._store_target(target.target)

    def _store_target(self, target: cst.BaseExpression) -> None:
        if isinstance(target, cst.Name):
            if target.value in self.tracked:
                raise Refusal(
                    "unsupported-connection-use", f"line {self.line_of(target)}: `{target.value}` is rebound"
                )
            return
        if isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._store_target(element.value)
            return
        self.expression(target)

    def _if(self, node: cst.If) -> bool:
        self.expression(node.test)
        entry = self.clean
        outcomes: list[tuple[bool, bool]] = []
        self.clean = entry
        falls = self.block(suite_statements(node.body))
        outcomes.append((self.clean, falls))
        self.clean = entry
        if isinstance(node.orelse, cst.If):
            falls = self._if(node.orelse)
        elif isinstance(node.orelse, cst.Else):
            falls = self.block(suite_statements(node.orelse.body))
        else:
            falls = True
        outcomes.append((self.clean, falls))
        return self._merge(outcomes)

    def _merge(self, outcomes: list[tuple[bool, bool]]) -> bool:
        flowing = [clean for clean, falls in outcomes if falls]
        self.clean = all(flowing)
        return bool(flowing)

    def _loop(self, node: cst.For | cst.While) -> bool:
        if isinstance(node, cst.For):
            if not (isinstance(node.iter, cst.Name) and node.iter.value in self.cursors):
                self.expression(node.iter)  # iterating a cursor is fine; anything else is checked
            self._store_target(node.target)
        else:
            self.expression(node.test)
        entry, before = self.clean, self.dirtied
        self.block(suite_statements(node.body))
        # A write anywhere in the body may be the last thing before the loop exits (break included).
        self.clean = entry and self.dirtied == before
        if node.orelse is not None:
            return self.block(suite_statements(node.orelse.body))
        return True

    def _with(self, node: cst.With) -> bool:
        for item in node.items:
            cursor = self._cursor_call(item.item)
            if cursor is not None:
                self._arguments(cursor)
                if item.asname is not None:
                    if not isinstance(item.asname.name, cst.Name):
                        raise Refusal(
                            "unsupported-connection-use", f"line {self.line_of(item)}: `{code_of(item)}`"
                        )
                    self.cursors.add(item.asname.name.value)
                continue
            if isinstance(item.item, cst.Name) and item.item.value == self.conn:
                raise Refusal(
                    "unsupported-connection-use",
                    f"line {self.line_of(item)}: a nested `with conn:` commits in the middle of the block",
                )
            self.expression(item.item)
            if item.asname is not None:
                self._store_target(item.asname.name)
        return self.block(suite_statements(node.body))

    def _try(self, node: cst.Try) -> bool:
        entry, before = self.clean, self.dirtied
        outcomes = [(self.clean, self.block(suite_statements(node.body)))]
        if node.orelse is not None:
            outcomes[0] = (self.clean, outcomes[0][1] and self.block(suite_statements(node.orelse.body)))
        handler_entry = entry and self.dirtied == before
        for handler in node.handlers:
            self.clean = handler_entry
            outcomes.append((self.clean, self.block(suite_statements(handler.body))))
        falls = self._merge(outcomes)
        if node.finalbody is not None:
            self.clean = self.clean and handler_entry
            falls = self.block(suite_statements(node.finalbody.body)) and falls
        return falls

    # -- expressions ------------------------------------------------------------------------------

    def _cursor_call(self, node: cst.BaseExpression) -> cst.Call | None:
        """``conn.cursor(...)`` -> the call; else None."""
        if (
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Attribute)
            and isinstance(node.func.value, cst.Name)
            and node.func.value.value == self.conn
            and node.func.attr.value == "cursor"
        ):
            return node
        return None

    def _arguments(self, call: cst.Call) -> None:
        for argument in call.args:
            self.expression(argument.value)

    def expression(self, node: cst.CSTNode) -> None:
        if isinstance(node, cst.Name):
            if node.value in self.tracked:
                raise Refusal(
                    "conn-escapes-scope",
                    f"line {self.line_of(node)}: `{node.value}` is passed, returned or stored",
                )
            return
        if (
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Attribute)
            and self._method_call(node, node.func)
        ):
            return
        if isinstance(node, cst.Attribute):
            self._attribute(node)
            return
        if isinstance(node, (cst.Lambda, cst.GeneratorExp)) and mentions(node, self.tracked):
            raise Refusal("conn-escapes-scope", f"line {self.line_of(node)}: captured by a lazy expression")
        if isinstance(node, (cst.Yield, cst.Await)) and isinstance(node, cst.Yield):
            raise Refusal(
                "conn-escapes-scope", f"line {self.line_of(node)}: yields while the connection is open"
            )
        if isinstance(node, cst.CompFor):
            if not (isinstance(node.iter, cst.Name) and node.iter.value in self.cursors):
                self.expression(node.iter)
            for condition in node.ifs:
                self.expression(condition)
            if node.inner_for_in is not None:
                self.expression(node.inner_for_in)
            return
        for child in node.children:
            self.expression(child)

    def _attribute(self, node: cst.Attribute) -> None:
        base = node.value
        if isinstance(base, cst.Name) and base.value == self.conn:
            raise Refusal("unsupported-connection-use", f"line {self.line_of(node)}: `{code_of(node)}`")
        if isinstance(base, cst.Name) and base.value in self.cursors:
            if node.attr.value == "connection":
                raise Refusal("conn-escapes-scope", f"line {self.line_of(node)}: `{code_of(node)}`")
            if node.attr.value not in _CURSOR_ATTRIBUTES:
                raise Refusal("unsupported-connection-use", f"line {self.line_of(node)}: `{code_of(node)}`")
            return
        self.expression(base)

    def _method_call(self, call: cst.Call, func: cst.Attribute) -> bool:
        """Handle ``conn.m(...)``/``cur.m(...)``/``conn.cursor().m(...)``; False if it is another call."""
        base, method = func.value, func.attr.value
        if isinstance(base, cst.Name) and base.value == self.conn:
            if method in _CONN_METHODS_RESETTING:
                self._arguments(call)
                self.clean = True
                return True
            if method == "cursor":
                # A cursor made and dropped in one expression is harmless only if nothing keeps it;
                # bare `conn.cursor()` used as a value is refused by the caller's context.
                self._arguments(call)
                return True
            raise Refusal("unsupported-connection-use", f"line {self.line_of(call)}: `{code_of(func)}()`")
        is_cursor = (isinstance(base, cst.Name) and base.value in self.cursors) or self._cursor_call(
            base
        ) is not None
        if not is_cursor:
            return False
        if self._cursor_call(base) is not None:
            self._arguments(self._cursor_call(base))  # type: ignore[arg-type]
        self._arguments(call)
        if method in _CURSOR_SAFE_METHODS:
            return True
        if method in _CURSOR_WRITING_METHODS:
            sql = literal_string(call.args[0].value) if call.args and method == "execute" else None
            if sql is None or not is_read_only_sql(sql):
                self.clean = False
                self.dirtied += 1
                self.last_write = call
            return True
        raise Refusal("unsupported-connection-use", f"line {self.line_of(call)}: `{code_of(func)}()`")
