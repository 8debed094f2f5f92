"""PS101 postgres-pooled: the seed pattern -> ``with get_pooled_connection() as conn:``, where proven safe.

The seed pattern, at the top level of a function body::

    conn = get_postgres_connection()
    if not conn:                 # or: if conn is None:
        return X
    try:
        BODY
    except ...:                  # optional handlers
        ...
    finally:
        conn.close()

``with get_pooled_connection() as conn:`` is *not* a drop-in for it, in two ways, and the rule rewrites
only when it can show that neither is observable (otherwise PS102's compat rewrite applies and this rule
records a ``reported`` site with the reason):

* **transactions**: the pooled block commits on a clean exit, while closing a legacy connection rolls back
  uncommitted work. Every normal exit of BODY must therefore have nothing uncommitted: it runs only
  literal read-only ``SELECT``s, or the last write before each exit is followed by ``commit()``/
  ``rollback()``, or BODY is a single ``with conn:`` block (which commits at the same point anyway).
  Otherwise: ``implicit-transaction``.
* **the None guard**: the pooled block raises ``psycopg2.OperationalError`` where the legacy code took the
  guard. The guard must end in ``return`` and the first handler of the seed's own ``try`` that catches
  ``OperationalError`` must run the very same statements. Otherwise: ``none-guard-differs``.

And the connection must stay inside the block: not returned, stored, passed to a function, yielded or
captured (``conn-escapes-scope``), not touched after the ``try`` or in an ``except`` block that now runs
after the connection went back to the pool (``conn-used-after-close``), and used only through cursors,
``commit`` and ``rollback`` (``unsupported-connection-use``).

``execute_with_pool``/``execute_with_pool_connection`` are never produced automatically: the first needs
the block turned into a function (a readability call the user should make), the second changes the error
contract (see the guide).
"""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import libcst as cst
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import (
    ImportAssignment,
    PositionProvider,
    QualifiedNameProvider,
    Scope,
    ScopeProvider,
)

from codemods.legacy_helpers import (
    DEFAULT_HELPER_NAME,
    HelperUse,
    HelperVerdicts,
    ImportPruner,
    collect_helper_uses,
    exported_names,
    unused_after_rewrite,
)
from codemods.rules.base import PoolshiftRule

POOLED = "get_pooled_connection"

# ---------------------------------------------------------------------------------------------- SQL

# Any of these words (outside string literals and comments) means the statement may write or change the
# session; the list is deliberately broad: a false alarm only costs an idiomatic rewrite.
_WRITE_WORDS_TEXT = """
insert update delete merge create drop alter truncate grant revoke copy call lock set into nextval setval
do execute perform notify listen unlisten refresh vacuum analyze cluster reindex comment prepare deallocate
discard reset load import security begin commit rollback savepoint release pg_advisory_lock
pg_advisory_xact_lock pg_try_advisory_lock set_config
"""
# Words that may be followed by "(" in a read-only query: SQL keywords and built-in functions without
# side effects. A call of anything else (a user-defined function may write) makes the query "may write".
_READ_ONLY_CALLABLES_TEXT = """
select from where and or not in exists any all some as on join using values over filter within group by
order partition case when then else coalesce nullif greatest least count sum avg min max lower upper
length char_length trim ltrim rtrim substring substr replace concat concat_ws round floor ceil ceiling abs
sign sqrt power mod now date_trunc date_part extract to_char to_date to_timestamp age array_agg string_agg
json_agg jsonb_agg json_build_object jsonb_build_object row_to_json to_json to_jsonb cast row_number rank
dense_rank lag lead first_value last_value bool_and bool_or every array_length unnest generate_series lpad
rpad split_part position strpos left right md5 format date numeric decimal varchar char interval lateral
"""
_WRITE_WORDS = frozenset(_WRITE_WORDS_TEXT.split())
_READ_ONLY_CALLABLES = frozenset(_READ_ONLY_CALLABLES_TEXT.split())


def is_read_only_sql(sql: str) -> bool:
    """True only for a single ``SELECT`` (or ``WITH ... SELECT``) that visibly cannot write."""
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S)
    text = re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", " x ", text)
    text = text.strip().rstrip(";").strip().lower()
    if ";" in text or not re.match(r"^\(*\s*(select|with)\b", text):
        return False
    if set(re.findall(r"[a-z_][a-z0-9_$]*", text)) & _WRITE_WORDS:
        return False
    called = re.findall(r"([a-z_][a-z0-9_$.]*)\s*\(", text)
    return all(name in _READ_ONLY_CALLABLES for name in called)


def _literal_sql(node: cst.BaseExpression) -> str | None:
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


# ------------------------------------------------------------------------------------------- proofs

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


class Refusal(Exception):
    """The site stays legacy (PS102 applies); ``reason`` is a PS101 reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _mentions(node: cst.CSTNode, names: set[str]) -> bool:
    class Finder(cst.CSTVisitor):
        found = False

        def visit_Name(self, name: cst.Name) -> None:
            if name.value in names:
                self.found = True

    finder = Finder()
    node.visit(finder)
    return finder.found


def _code(node: cst.CSTNode) -> str:
    return " ".join(cst.Module([]).code_for_node(node).split())


class _BodyProof:
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
            if _mentions(node, self.tracked):
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
            if _mentions(node, self.tracked):
                raise Refusal("unsupported-connection-use", f"line {self.line_of(node)}: `{_code(node)}`")
        elif not isinstance(node, (cst.Pass, cst.Break, cst.Continue, cst.Import, cst.ImportFrom)):
            raise Refusal("not-seed-pattern", f"line {self.line_of(node)}: `{_code(node)}` is not analysed")
        return True

    def _leave(self, node: cst.Return | cst.Raise) -> None:
        """A ``return`` is a normal exit (must be clean); a ``raise`` rolls back in both versions."""
        if isinstance(node, cst.Return):
            if node.value is not None:
                self.expression(node.value)
            self._exit(node)
            return
        for part in (node.exc, node.cause.item if node.cause else None):
            if part is not None:
                self.expression(part)

    def _exit(self, node: cst.CSTNode) -> None:
        if not self.clean and not self.commits_on_exit:
            write = f" after the write at line {self.line_of(self.last_write)}" if self.last_write else ""
            raise Refusal(
                "implicit-transaction",
                f"line {self.line_of(node)}: the block can end with uncommitted work{write}; closing the "
                "legacy connection rolls it back, the pooled block would commit it",
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
        falls = self.block(_statements(node.body))
        outcomes.append((self.clean, falls))
        self.clean = entry
        if isinstance(node.orelse, cst.If):
            falls = self._if(node.orelse)
        elif isinstance(node.orelse, cst.Else):
            falls = self.block(_statements(node.orelse.body))
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
        self.block(_statements(node.body))
        # A write anywhere in the body may be the last thing before the loop exits (break included).
        self.clean = entry and self.dirtied == before
        if node.orelse is not None:
            return self.block(_statements(node.orelse.body))
        return True

    def _with(self, node: cst.With) -> bool:
        for item in node.items:
            cursor = self._cursor_call(item.item)
            if cursor is not None:
                self._arguments(cursor)
                if item.asname is not None:
                    if not isinstance(item.asname.name, cst.Name):
                        raise Refusal(
                            "unsupported-connection-use", f"line {self.line_of(item)}: `{_code(item)}`"
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
        return self.block(_statements(node.body))

    def _try(self, node: cst.Try) -> bool:
        entry, before = self.clean, self.dirtied
        outcomes = [(self.clean, self.block(_statements(node.body)))]
        if node.orelse is not None:
            outcomes[0] = (self.clean, outcomes[0][1] and self.block(_statements(node.orelse.body)))
        handler_entry = entry and self.dirtied == before
        for handler in node.handlers:
            self.clean = handler_entry
            outcomes.append((self.clean, self.block(_statements(handler.body))))
        falls = self._merge(outcomes)
        if node.finalbody is not None:
            self.clean = self.clean and handler_entry
            falls = self.block(_statements(node.finalbody.body)) and falls
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
        if isinstance(node, (cst.Lambda, cst.GeneratorExp)) and _mentions(node, self.tracked):
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
            raise Refusal("unsupported-connection-use", f"line {self.line_of(node)}: `{_code(node)}`")
        if isinstance(base, cst.Name) and base.value in self.cursors:
            if node.attr.value == "connection":
                raise Refusal("conn-escapes-scope", f"line {self.line_of(node)}: `{_code(node)}`")
            if node.attr.value not in _CURSOR_ATTRIBUTES:
                raise Refusal("unsupported-connection-use", f"line {self.line_of(node)}: `{_code(node)}`")
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
            raise Refusal("unsupported-connection-use", f"line {self.line_of(call)}: `{_code(func)}()`")
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
            sql = _literal_sql(call.args[0].value) if call.args and method == "execute" else None
            if sql is None or not is_read_only_sql(sql):
                self.clean = False
                self.dirtied += 1
                self.last_write = call
            return True
        raise Refusal("unsupported-connection-use", f"line {self.line_of(call)}: `{_code(func)}()`")


def _statements(block: cst.BaseSuite) -> list[cst.BaseStatement]:
    if isinstance(block, cst.IndentedBlock):
        return list(block.body)
    assert isinstance(block, cst.SimpleStatementSuite)
    return [cst.SimpleStatementLine(body=block.body)]


# --------------------------------------------------------------------------------------- the seed


@dataclass
class SeedPlan:
    """How to rewrite one proven seed: statements [index, index+3) of the function body become one."""

    index: int
    conn: str
    with_conn_body: bool  # BODY was a single `with conn:` block: its body moves up one level
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


class _Comments(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def visit_Comment(self, node: cst.Comment) -> None:
        self.found.append(node.value)


def _comments_in(nodes: Sequence[cst.CSTNode]) -> list[str]:
    collector = _Comments()
    for node in nodes:
        node.visit(collector)
    return collector.found


class SeedProof:
    """Decides one candidate ``conn = helper()`` at ``function.body[index]``: a plan or a Refusal."""

    def __init__(
        self,
        function: cst.FunctionDef,
        index: int,
        conn: str,
        line_of: Callable[[cst.CSTNode], int],
        names_of: Callable[[cst.CSTNode], set[str]],
    ) -> None:
        self.body = _statements(function.body)
        self.index = index
        self.conn = conn
        self.line_of = line_of
        self.names_of = names_of

    def prove(self) -> SeedPlan:
        guard, attempt = self._shape()
        plan = SeedPlan(index=self.index, conn=self.conn, with_conn_body=False)
        inner = _statements(attempt.body)
        if len(inner) == 1 and isinstance(inner[0], cst.With) and self._is_with_conn(inner[0]):
            plan.with_conn_body = True
            proof = _BodyProof(self.conn, self.line_of, commits_on_exit=True)
            inner_body = _statements(inner[0].body)
        else:
            proof = _BodyProof(self.conn, self.line_of, commits_on_exit=False)
            inner_body = inner
        if proof.block(inner_body):
            proof._exit(attempt.body)  # falling off the end of the block is an exit too
        self._check_handlers(attempt, proof.tracked, plan)
        self._check_guard(guard, attempt, plan)
        self._check_surroundings(proof.tracked)
        plan.comments = self._removed_comments(guard, attempt, plan)
        return plan

    def _shape(self) -> tuple[cst.If, cst.Try]:
        rest = self.body[self.index + 1 : self.index + 3]
        if len(rest) >= 1 and isinstance(rest[0], cst.Try) and self._closes(rest[0]):
            raise Refusal(
                "none-guard-differs", "there is no `if not conn:` guard; the legacy code fails differently"
            )
        if len(rest) < 2 or not _guard_kind(rest[0], self.conn):
            raise Refusal("not-seed-pattern", "the call is not followed by `if not conn: return ...`")
        guard, attempt = rest
        assert isinstance(guard, cst.If)
        if not isinstance(attempt, cst.Try) or not self._closes(attempt):
            raise Refusal("not-seed-pattern", "the guard is not followed by `try: ... finally: conn.close()`")
        if attempt.orelse is not None:
            raise Refusal("not-seed-pattern", "the try has an else clause")
        inner = _statements(attempt.body)
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
        final = _statements(attempt.finalbody.body)
        return len(final) == 1 and _is_method_call_statement(final[0], self.conn, "close")

    def _is_with_conn(self, node: cst.With) -> bool:
        return (
            len(node.items) == 1
            and isinstance(node.items[0].item, cst.Name)
            and node.items[0].item.value == self.conn
            and node.items[0].asname is None
            and node.asynchronous is None
        )

    def _check_handlers(self, attempt: cst.Try, tracked: set[str], plan: SeedPlan) -> None:
        """Handlers will run after the connection went back to the pool: they may not touch it.

        Leading ``conn.rollback()`` calls are dropped: the pooled block already rolled back by then.
        """
        for position, handler in enumerate(attempt.handlers):
            statements = _statements(handler.body)
            leading = 0
            while leading < len(statements) and _is_method_call_statement(
                statements[leading], self.conn, "rollback"
            ):
                leading += 1
            if any(_mentions(statement, tracked) for statement in statements[leading:]):
                raise Refusal(
                    "conn-used-after-close",
                    f"line {self.line_of(handler)}: the except block uses the connection, which the pooled "
                    "block has already returned when it runs",
                )
            if leading:
                plan.drop_rollbacks[position] = leading

    def _check_guard(self, guard: cst.If, attempt: cst.Try, plan: SeedPlan) -> None:
        guard_body = _statements(guard.body)
        last = guard_body[-1] if guard_body else None
        ends_in_return = isinstance(last, cst.SimpleStatementLine) and isinstance(last.body[-1], cst.Return)
        if self._guard_uses_conn(guard):
            raise Refusal("not-seed-pattern", "the guard's body uses the connection")
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
        guard_body = _statements(guard.body)
        for position, handler in enumerate(attempt.handlers):
            catches = self._catches(handler, failure_class)
            if catches is None:
                raise Refusal(
                    "none-guard-differs",
                    f"line {self.line_of(handler)}: cannot tell whether this except catches {failure}",
                )
            if not catches:
                continue
            body = _statements(handler.body)[plan.drop_rollbacks.get(position, 0) :]
            uses_name = handler.name is not None and _mentions(
                cst.IndentedBlock(body=body), {_code(handler.name.name)}
            )
            if not uses_name and _same_statements(body, guard_body):
                return
            raise Refusal(
                "none-guard-differs",
                f"line {self.line_of(handler)}: on {failure} the pooled block runs this except block, "
                f"which differs from the guard (`{_code(guard.body)}`)",
            )
        raise Refusal(
            "none-guard-differs",
            f"no except block of the try catches {failure}, which the pooled block raises where the "
            f"legacy code took the guard (`{_code(guard.body)}`)",
        )

    def _guard_uses_conn(self, guard: cst.If) -> bool:
        return any(_mentions(statement, {self.conn}) for statement in _statements(guard.body))

    def _catches(self, handler: cst.ExceptHandler, failure_class: type) -> bool | None:
        """True/False, or None when a type cannot be resolved (the rule then refuses)."""
        if handler.type is None:
            return True
        types = (
            [e.value for e in handler.type.elements]
            if isinstance(handler.type, cst.Tuple)
            else [handler.type]
        )
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

    def _check_surroundings(self, tracked: set[str]) -> None:
        before, after = self.body[: self.index], self.body[self.index + 3 :]
        for statement in before:
            if (
                isinstance(statement, cst.SimpleStatementLine)
                and any(isinstance(small, (cst.Global, cst.Nonlocal)) for small in statement.body)
                and _mentions(statement, tracked)
            ):
                raise Refusal("conn-escapes-scope", f"line {self.line_of(statement)}: `{_code(statement)}`")
            if _captures(statement, tracked):
                raise Refusal(
                    "conn-escapes-scope",
                    f"line {self.line_of(statement)}: a closure refers to the connection",
                )
        live = set(tracked)
        for statement in after:
            rebound = _simple_rebind(statement)
            if rebound is not None and not _mentions(rebound[1], live):
                live.discard(rebound[0])
                if not live:
                    return
                continue
            if _mentions(statement, live):
                raise Refusal(
                    "conn-used-after-close",
                    f"line {self.line_of(statement)}: the connection (or a cursor) is used after the block",
                )

    def _removed_comments(self, guard: cst.If, attempt: cst.Try, plan: SeedPlan) -> list[str]:
        """Comments in the statements the rewrite removes; they are put above the new statement."""
        first = self.body[self.index]
        assert isinstance(first, cst.SimpleStatementLine)
        removed: list[cst.CSTNode] = [first.trailing_whitespace, guard]
        if attempt.finalbody is not None:
            removed.append(attempt.finalbody)
        if plan.with_conn_body:
            inner = _statements(attempt.body)[0]
            assert isinstance(inner, cst.With)
            removed.extend(inner.leading_lines)
            if isinstance(inner.body, cst.IndentedBlock):
                removed.append(inner.body.header)
        for position, count in plan.drop_rollbacks.items():
            removed.extend(_statements(attempt.handlers[position].body)[:count])
        return _comments_in(removed)


def _captures(statement: cst.CSTNode, names: set[str]) -> bool:
    class Finder(cst.CSTVisitor):
        found = False

        def visit_Lambda(self, node: cst.Lambda) -> None:
            self.found = self.found or _mentions(node, names)

        def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
            self.found = self.found or _mentions(node, names)

        def visit_ClassDef(self, node: cst.ClassDef) -> None:
            self.found = self.found or _mentions(node, names)

    finder = Finder()
    statement.visit(finder)
    return finder.found


def _simple_rebind(statement: cst.BaseStatement) -> tuple[str, cst.BaseExpression] | None:
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


# ------------------------------------------------------------------------------------------ the rule


class _Candidates(cst.CSTVisitor):
    """``conn = <call>`` statements at the top level of function bodies: (function, index, name, call)."""

    def __init__(self, calls: set[int]) -> None:
        super().__init__()
        self.calls = calls
        self.found: list[tuple[cst.FunctionDef, int, str, cst.Call]] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        for index, statement in enumerate(_statements(node.body)):
            rebind = _simple_rebind(statement)
            if rebind is not None and isinstance(rebind[1], cst.Call) and id(rebind[1]) in self.calls:
                self.found.append((node, index, rebind[0], rebind[1]))


class PostgresPooledRule(PoolshiftRule):
    """The seed pattern -> ``with get_pooled_connection() as conn:``, where proven behavior-preserving."""

    RULE_ID = "PS101"
    NAME = "postgres-pooled"
    DESCRIPTION = (
        "Rewrite `conn = get_postgres_connection(); if not conn: return ...; try: ... finally: conn.close()` "
        "into `with get_pooled_connection() as conn:` where the rule proves behavior stays the same."
    )
    SAFETY = "guarded"
    PREFILTER: ClassVar[tuple[str, ...]] = (DEFAULT_HELPER_NAME,)
    REASON_CODES: ClassVar[dict[str, str]] = {
        "not-seed-pattern": "the call is not in the conn/guard/try-finally shape the rule rewrites",
        "none-guard-differs": "the pooled block raises where the legacy code took the None guard, observably",
        "implicit-transaction": (
            "a path ends with uncommitted work: legacy close rolls back, the pooled block commits"
        ),
        "conn-escapes-scope": "the connection or a cursor is returned, stored, passed, yielded or captured",
        "conn-used-after-close": "the connection or a cursor is used after the block or in an except block",
        "unsupported-connection-use": (
            "the connection is used in a way the proof does not cover (attributes, `with conn:` inside...)"
        ),
        "custom-factory": "the legacy helper connects differently from the shim",
        "unknown-helper": "the legacy helper's definition was not found",
        "unsupported-argument": "the helper is called with arguments",
        "dynamic-callee": "the name may be the helper or something else",
    }

    def visit_Module(self, node: cst.Module) -> bool:
        self.plans: dict[int, list[SeedPlan]] = {}
        self.pruner = ImportPruner(set())
        helpers = self.options.legacy_helpers
        if not helpers:
            return False
        uses = [
            use
            for use in collect_helper_uses(
                node,
                lambda n: self.get_metadata(QualifiedNameProvider, n, set()),
                helpers,
                self.context.full_module_name,
                self.context.full_package_name,
            )
            if use.is_call and not use.in_definition
        ]
        verdicts = HelperVerdicts(
            node,
            filename=self.context.filename,
            module_name=self.context.full_module_name,
            extra=self.options.extra,
        )
        candidates = _Candidates({id(use.node) for use in uses})
        node.visit(candidates)
        by_call = {id(call): (function, index, name) for function, index, name, call in candidates.found}
        rewritten: list[cst.CSTNode] = []
        for use in uses:
            if self._decide(use, verdicts, by_call.get(id(use.node))):
                assert isinstance(use.node, cst.Call)
                rewritten.append(use.node.func)
        if rewritten:
            scopes = {scope for scope in self.metadata[ScopeProvider].values() if isinstance(scope, Scope)}
            self.pruner = ImportPruner(unused_after_rewrite(scopes, rewritten, exported_names(node)))
            self.pooled_call = self._pooled_callee(scopes)
        return True

    def _decide(
        self, use: HelperUse, verdicts: HelperVerdicts, candidate: tuple[cst.FunctionDef, int, str] | None
    ) -> bool:
        assert isinstance(use.node, cst.Call)
        if use.ambiguous:
            self.record(use.node, "reported", "dynamic-callee", f"the name may not be {use.helper}")
            return False
        if use.node.args:
            self.record(
                use.node, "reported", "unsupported-argument", "the pooled connection takes no arguments"
            )
            return False
        if candidate is None:
            self.record(
                use.node,
                "reported",
                "not-seed-pattern",
                "not `conn = helper()` at the top of a function body",
            )
            return False
        verdict = verdicts.verdict(use.helper)
        if not verdict.equivalent:
            self.record(use.node, "reported", verdict.reason, verdict.message)
            return False
        function, index, name = candidate
        try:
            plan = SeedProof(function, index, name, self._line_of, self._names_of).prove()
        except Refusal as refusal:
            self.record(use.node, "reported", refusal.reason, refusal.message)
            return False
        self.plans.setdefault(id(function.body), []).append(plan)
        self.record(use.node, "migrated", None, f"seed pattern -> with {POOLED}() as {name}:")
        return True

    def _line_of(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    def _names_of(self, node: cst.CSTNode) -> set[str]:
        """Qualified names; a module-level name counts only when it is a class (not an alias of one)."""
        names: set[str] = set()
        for qualified in self.get_metadata(QualifiedNameProvider, node, set()):
            if qualified.source.name == "LOCAL" and not self._is_local_class(node):
                names.add("?")  # e.g. `DBError = psycopg2.Error`: unknown, so the rule refuses
            else:
                names.add(qualified.name)
        return names

    def _is_local_class(self, node: cst.CSTNode) -> bool:
        if not isinstance(node, cst.Name):
            return False
        scope = self.get_metadata(ScopeProvider, node, None)
        if scope is None:
            return False
        assignments = list(scope[node.value])
        return bool(assignments) and all(
            isinstance(getattr(a, "node", None), cst.ClassDef) for a in assignments
        )

    def _pooled_callee(self, scopes: set[Scope]) -> str:
        """``get_pooled_connection`` unless that name is already bound to something else in the file."""
        for scope in scopes:
            for assignment in scope.assignments[POOLED]:
                node = getattr(assignment, "node", None)
                if not (
                    isinstance(assignment, ImportAssignment)
                    and isinstance(node, cst.ImportFrom)
                    and isinstance(node.module, cst.Name)
                    and node.module.value == "db_utils"
                    and not node.relative
                ):
                    AddImportsVisitor.add_needed_import(self.context, "db_utils")
                    return f"db_utils.{POOLED}"
        AddImportsVisitor.add_needed_import(self.context, "db_utils", POOLED)
        return POOLED

    # -- transform --------------------------------------------------------------------------------

    def _apply_plans(
        self, original: cst.IndentedBlock, body: list[cst.BaseStatement]
    ) -> list[cst.BaseStatement]:
        """Replace each proven seed (3 statements) by its rewrite, bottom-up so indices stay valid.

        This runs in ``leave_IndentedBlock`` *before* emptied import lines are dropped: they are still
        placeholders then, so the indices recorded on the original body are exact.
        """
        for plan in sorted(self.plans.get(id(original), []), key=lambda p: p.index, reverse=True):
            body[plan.index : plan.index + 3] = [self._rewrite(body, plan)]
        return body

    def _rewrite(self, body: list[cst.BaseStatement], plan: SeedPlan) -> cst.BaseStatement:
        first, attempt = body[plan.index], body[plan.index + 2]
        assert isinstance(first, cst.SimpleStatementLine)
        assert isinstance(attempt, cst.Try)
        assert isinstance(attempt.body, cst.IndentedBlock)  # SeedProof refuses one-line try bodies
        block = attempt.body
        if plan.with_conn_body:
            inner = _statements(block)[0]
            assert isinstance(inner, cst.With)
            assert isinstance(inner.body, cst.IndentedBlock)
            # The `try:` line's trailing comment stays on the line that replaces it.
            block = inner.body.with_changes(header=block.header)
        with_node = cst.With(
            items=[
                cst.WithItem(
                    item=cst.Call(func=cst.parse_expression(self.pooled_call)),
                    asname=cst.AsName(name=cst.Name(plan.conn)),
                )
            ],
            body=block,
        )
        carried = [cst.EmptyLine(comment=cst.Comment(text)) for text in plan.comments]
        if not attempt.handlers:
            leading = [*first.leading_lines, *attempt.leading_lines, *carried]
            return with_node.with_changes(leading_lines=leading)
        handlers = [
            self._drop_rollbacks(handler, plan.drop_rollbacks.get(position, 0))
            for position, handler in enumerate(attempt.handlers)
        ]
        return attempt.with_changes(
            body=cst.IndentedBlock(
                body=[with_node.with_changes(body=block.with_changes(header=cst.TrailingWhitespace()))],
                header=block.header,
            ),
            handlers=handlers,
            finalbody=None,
            leading_lines=[*first.leading_lines, *carried, *attempt.leading_lines],
        )

    @staticmethod
    def _drop_rollbacks(handler: cst.ExceptHandler, count: int) -> cst.ExceptHandler:
        if not count or not isinstance(handler.body, cst.IndentedBlock):
            return handler
        remaining = list(handler.body.body)[count:] or [cst.SimpleStatementLine(body=[cst.Pass()])]
        return handler.with_changes(body=handler.body.with_changes(body=remaining))

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        return self.pruner.prune_line(original_node, updated_node)

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        planned = self._apply_plans(original_node, list(updated_node.body))
        body, footer = self.pruner.drop_emptied(planned, updated_node.footer)
        if not body:
            body = [cst.SimpleStatementLine(body=[cst.Pass()])]
        return updated_node.with_changes(body=body, footer=footer)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        body, footer = self.pruner.drop_emptied(updated_node.body, updated_node.footer)
        return updated_node.with_changes(body=body, footer=footer)
