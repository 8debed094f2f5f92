"""Does a legacy helper always hand back a connection, raising when it cannot connect?

Much real code calls a helper that is nothing but ``return psycopg2.connect(...)``: a failed connect
raises, ``None`` never comes back, and its callers have no ``if not conn:`` guard. PS101 may rewrite such
a caller only when both facts are shown from the helper's code, so this module proves them (or stays
silent):

* :data:`NEVER_RETURNS_NONE`: every value it returns is a connect call's result (``return connect(...)``,
  or a name bound once, at the top of its body, to ``connect(...)`` and returned as its last statement),
  and control cannot fall off its end. A failed connect raises; ``None`` is never returned.
* :data:`RUNS_ONLY_THE_CONNECT`: moreover its body is only local assignments and that one ``return``, and
  nothing in it calls anything but the connect function and a few pure built-ins (``os.environ.get``,
  ``int``...). It then cannot raise a *statement's* error (``IntegrityError``, ``DataError``: SQLSTATE
  classes 22/23 only come from a statement the server ran), so a caller's ``except IntegrityError`` does
  not catch anything it raises.

The facts are sentences of the helper's contract analysis (:mod:`.equivalence`), so they reach the rules
through the runner's whole-tree analysis, and the result cache keys on them like on every other fact.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

import libcst as cst

from codemods.cst.syntax import strip_docstring, suite_statements
from codemods.legacy_helpers.discovery import CONNECT_FUNCTIONS
from codemods.legacy_helpers.returns import OwnBodyVisitor

NEVER_RETURNS_NONE = "it never returns None: a failed connect raises"
RUNS_ONLY_THE_CONNECT = "it runs nothing but the connect (it cannot raise a statement's error)"

#: Calls a "runs only the connect" helper may make besides connecting: they run no SQL.
_PURE_CALLS = frozenset(
    {
        "os.environ.get",
        "os.getenv",
        "builtins.int",
        "builtins.str",
        "builtins.float",
        "builtins.bool",
        "builtins.dict",
        "builtins.len",
    }
)
# Dotted names an attribute of a "runs only the connect" helper may spell (``db_utils.postgres.connect``
# passes through ``db_utils.postgres``).
_MODULE_NAMES = frozenset(
    ".".join(name.split(".")[:end])
    for name in (*_PURE_CALLS, *CONNECT_FUNCTIONS)
    for end in range(1, name.count(".") + 2)
)
# Expressions whose evaluation runs no user code (beyond the calls checked separately).
_INERT = (
    cst.Name,
    cst.BaseNumber,
    cst.BaseString,
    cst.Dict,
    cst.List,
    cst.Tuple,
    cst.Set,
    cst.IfExp,
    cst.BooleanOperation,
    cst.Comparison,
    cst.UnaryOperation,
    cst.BinaryOperation,
    cst.Call,
    cst.Subscript,
    cst.Attribute,
)

NamesOf = Callable[[cst.CSTNode], set[str]]


def raising_helper_facts(module: cst.Module, function: cst.FunctionDef, names_of: NamesOf) -> list[str]:
    """The facts above that hold for ``function`` (a module-level helper of ``module``), or none."""
    if function.decorators or function.asynchronous is not None or not _defined_once(module, function):
        return []
    body = strip_docstring(suite_statements(function.body))
    returns = _Returns(function)
    function.visit(returns)
    last = body[-1] if body else None
    if (
        returns.yields
        or len(returns.found) != 1
        or not isinstance(last, cst.SimpleStatementLine)
        or len(last.body) != 1
        or last.body[0] is not returns.found[0]
    ):
        return []
    value = returns.found[0].value
    if _is_connect(value, names_of):
        assert isinstance(value, cst.Call)
        pure = all(_is_local_assignment(statement) for statement in body[:-1]) and all(
            _runs_no_sql(statement, value, names_of) for statement in body
        )
        return [NEVER_RETURNS_NONE, RUNS_ONLY_THE_CONNECT] if pure else [NEVER_RETURNS_NONE]
    if isinstance(value, cst.Name) and _bound_once_to_connect(function, body, value.value, names_of):
        return [NEVER_RETURNS_NONE]
    return []


class _Returns(OwnBodyVisitor):
    """The function's own ``return`` statements and whether it yields (nested scopes skipped)."""

    def __init__(self, root: cst.FunctionDef) -> None:
        super().__init__(root)
        self.found: list[cst.Return] = []
        self.yields = False

    def visit_Return(self, node: cst.Return) -> None:
        self.found.append(node)

    def visit_Yield(self, node: cst.Yield) -> None:
        self.yields = True

    def visit_Await(self, node: cst.Await) -> None:
        self.yields = True


def _is_connect(value: cst.BaseExpression | None, names_of: NamesOf) -> bool:
    if not isinstance(value, cst.Call):
        return False
    names = names_of(value.func)
    return bool(names) and names <= CONNECT_FUNCTIONS


def _bound_once_to_connect(
    function: cst.FunctionDef, body: list[cst.BaseStatement], name: str, names_of: NamesOf
) -> bool:
    """``name = connect(...)`` is a top-level statement and the only binding of ``name`` anywhere."""
    assigned = [
        statement
        for statement in body[:-1]
        if isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.Assign)
        and len(statement.body[0].targets) == 1
        and isinstance(statement.body[0].targets[0].target, cst.Name)
        and statement.body[0].targets[0].target.value == name
        and _is_connect(statement.body[0].value, names_of)
    ]
    source = cst.Module([]).code_for_node(function.with_changes(leading_lines=[]))
    return len(assigned) == 1 and _bindings(source, name) == 1


def _bindings(source: str, name: str) -> int:
    """How many places bind ``name`` in ``source`` (any scope; ``global``/``nonlocal`` count as many)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return 2
    return sum(_binds(node, name) for node in ast.walk(tree))


def _binds(node: ast.AST, name: str) -> int:
    if isinstance(node, ast.Name):
        return int(node.id == name and not isinstance(node.ctx, ast.Load))
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return 2 * (name in node.names)
    if isinstance(node, ast.alias):
        return int((node.asname or node.name.split(".")[0]) == name)
    if isinstance(node, ast.MatchMapping):
        return int(node.rest == name)
    bound = getattr(node, "name", None)  # def, class, except ... as, match captures
    named = (
        ast.FunctionDef,
        ast.AsyncFunctionDef,
        ast.ClassDef,
        ast.ExceptHandler,
        ast.MatchAs,
        ast.MatchStar,
    )
    return int(isinstance(node, named) and bound == name)


def _defined_once(module: cst.Module, function: cst.FunctionDef) -> bool:
    """The helper's name is bound once in its module (by its ``def``): nothing replaces or wraps it."""
    return _bindings(module.code, function.name.value) == 1


def _is_local_assignment(statement: cst.BaseStatement) -> bool:
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return False
    small = statement.body[0]
    if isinstance(small, cst.Assign):
        return all(isinstance(target.target, cst.Name) for target in small.targets)
    return isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name) and small.value is not None


def _runs_no_sql(statement: cst.BaseStatement, connect: cst.Call, names_of: NamesOf) -> bool:
    """Every expression in ``statement`` is inert and every call is ``connect`` or a pure built-in."""

    class Check(cst.CSTVisitor):
        ok = True

        def on_visit(self, node: cst.CSTNode) -> bool:
            if isinstance(node, cst.BaseExpression) and not self._inert(node):
                self.ok = False
            return self.ok

        def _inert(self, node: cst.BaseExpression) -> bool:
            if not isinstance(node, _INERT):
                return False
            if isinstance(node, cst.Call):
                callee = names_of(node.func)
                return node is connect or (bool(callee) and callee <= _PURE_CALLS)
            if isinstance(node, cst.Attribute):  # only the modules' own names: no property of an object
                names = names_of(node)
                return bool(names) and names <= _MODULE_NAMES
            return True

    check = Check()
    statement.visit(check)
    return check.ok
