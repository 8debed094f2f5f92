"""Is a legacy helper equivalent to ``db_utils.get_postgres_connection``?

Routing a helper's callers to the shim (PS102) preserves behavior only when the helper connects like the shim
*and* keeps its contract: ``None`` on a failed connect, nothing else done to the connection. PS101, which
keeps calling the helper (on its own pool), needs only the contract, and only when the caller has ``except``
blocks (``contract_only``). This module checks the contract (the helper's control flow);
:mod:`.connect_arguments` checks the connection parameters. Every difference found is a sentence for the
report, because the user decides what to do about it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import libcst as cst

from codemods.cst.literals import literal
from codemods.cst.syntax import (
    code_of,
    has_parameters,
    module_level_functions,
    parse_or_none,
    simple_assignment,
    strip_docstring,
    suite_statements,
)
from codemods.legacy_helpers.connect_arguments import ConnectArgumentCheck
from codemods.legacy_helpers.escapes import ModuleScope, ProjectModules, escape_facts
from codemods.legacy_helpers.raising_helper import raising_helper_facts

# Exceptions that cover a failed psycopg2.connect (it raises OperationalError).
_CONNECT_FAILURE_CATCHERS = frozenset(
    {
        "psycopg2.Error",
        "psycopg2.DatabaseError",
        "psycopg2.OperationalError",
        "psycopg2.errors.Error",
        "psycopg2.errors.DatabaseError",
        "psycopg2.errors.OperationalError",
        "builtins.Exception",
        "builtins.BaseException",
    }
)
_LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})


def analyse_legacy_helpers(
    sources: Mapping[str, str],
    module_names: Mapping[str, str],
    helpers: Sequence[str],
    *,
    contract_only: bool = False,
) -> dict[str, tuple[str, ...]]:
    """FQN -> what differs from the shim (empty tuple: equivalent) for every helper found in ``sources``.

    The runner passes this in ``RuleOptions.legacy_helper_differences`` so PS101/PS102 can judge
    call sites in files other than the helper's own.
    """
    by_module = {module: path for path, module in module_names.items()}

    def read(module_name: str) -> tuple[str, bool] | None:
        path = by_module.get(module_name)
        if path is None or path not in sources:
            return None
        return sources[path], path.endswith("__init__.py")

    verdicts: dict[str, tuple[str, ...]] = {}
    for helper in helpers:
        module_name, _, function_name = helper.rpartition(".")
        found = read(module_name)
        if found is None:
            continue
        differences = helper_differences(
            found[0],
            function_name,
            contract_only=contract_only,
            project=ProjectModules(module_name, found[1], read),
        )
        if differences is not None:
            verdicts[helper] = differences
    return verdicts


def helper_differences(
    source: str, function_name: str, *, contract_only: bool = False, project: ProjectModules | None = None
) -> tuple[str, ...] | None:
    """What the helper ``function_name`` in ``source`` does differently from the shim; None if not defined.

    Equivalent means: no parameters, no decorators; its body (after the docstring) builds the parameters
    (optionally via local names or a parameterless module-level function returning a dict literal) and is
    ``try: return psycopg2.connect(**params) except <connect failure>: <log>; return None`` (or assigns
    the connection and returns it), where every parameter is read from ``POSTGRES_*`` with the shim's
    default. Anything else is a difference, spelled out for the report.

    ``contract_only`` leaves out the connection parameters (and the helper's own parameters): what is
    left says whether the helper keeps the contract "a connection, or None when connecting fails" that
    PS101's rewrite relies on when the caller has ``except`` blocks. Facts come with it: for a helper
    that keeps the contract, which exceptions still escape it (:mod:`.escapes`, always stated); for one
    that does not, whether it raises instead (:mod:`.raising_helper`). ``project`` names the helper's
    module and reads the project's others, so the escape analysis can follow calls into them.
    """
    module = parse_or_none(source)
    if module is None:
        return None
    functions = [f for f in module_level_functions(module) if f.name.value == function_name]
    if not functions:
        return None
    project = project or ProjectModules()
    scope = ModuleScope(module, project.module_name, project.is_package)
    analysis = (_ContractAnalysis if contract_only else _HelperAnalysis)(scope, project)
    if len(functions) > 1:
        return ("it is defined more than once",)
    return tuple(analysis.differences_of(functions[0]))


class _HelperAnalysis(ConnectArgumentCheck):
    """Walks one helper's body: what it runs before, inside and after its ``try``."""

    CONTRACT_ONLY = False

    def __init__(self, scope: ModuleScope, project: ProjectModules) -> None:
        super().__init__(scope.module, scope.qualified)
        self.scope = scope
        self.project = project

    def differences_of(self, function: cst.FunctionDef) -> list[str]:
        differences: list[str] = []
        if function.decorators:
            differences.append("it is decorated")
        if function.asynchronous is not None:
            differences.append("it is async")
        if has_parameters(function.params) and not self.CONTRACT_ONLY:
            differences.append("it takes parameters")
        body = strip_docstring(suite_statements(function.body))
        tries = [statement for statement in body if isinstance(statement, cst.Try)]
        if not tries:
            connect, extra = _connect_call(body)
            if connect is not None and not extra:
                differences.extend(self.connect_differences(connect))
                return [*differences, "it lets connection errors propagate (the shim returns None)"]
        if len(tries) != 1:
            return [*differences, "it is not `try: return psycopg2.connect(...)` / `except: return None`"]
        before, after = body[: body.index(tries[0])], body[body.index(tries[0]) + 1 :]
        for statement in before:
            if not self._collect_local(statement):
                differences.append(f"it runs `{code_of(statement)}` before connecting")
        differences.extend(self._try_differences(tries[0]))
        returns_in_try = any(
            isinstance(small, cst.Return)
            for line in suite_statements(tries[0].body)
            if isinstance(line, cst.SimpleStatementLine)
            for small in line.body
        )
        if not returns_in_try and not after:
            differences.append("it never returns the connection")
        elif not self._returns_connection(tries[0], after):
            differences.append("it does more after the try: " + "; ".join(code_of(s) for s in after))
        return differences

    def _returns_connection(self, attempt: cst.Try, after: list[cst.BaseStatement]) -> bool:
        """After the try only ``return None`` (the failure path) or ``return conn`` (assigned in the try)."""
        if not after:
            return True
        if len(after) != 1 or not isinstance(after[0], cst.SimpleStatementLine) or len(after[0].body) != 1:
            return False
        small = after[0].body[0]
        if not isinstance(small, cst.Return):
            return False
        if literal(small.value) is None:
            return True
        first = suite_statements(attempt.body)[0] if suite_statements(attempt.body) else None
        return (
            isinstance(small.value, cst.Name)
            and isinstance(first, cst.SimpleStatementLine)
            and isinstance(first.body[0], cst.Assign)
            and len(first.body[0].targets) == 1
            and isinstance(first.body[0].targets[0].target, cst.Name)
            and first.body[0].targets[0].target.value == small.value.value
        )

    def _collect_local(self, statement: cst.BaseStatement) -> bool:
        """Record ``name = <expr>`` so ``**name``/``name`` arguments can be read; False for anything else."""
        assignment = simple_assignment(statement)
        if assignment is None:
            return False
        name, value = assignment
        self.locals[name] = value
        return True

    def _try_differences(self, node: cst.Try) -> list[str]:
        differences: list[str] = []
        if node.orelse is not None or node.finalbody is not None:
            differences.append("its try has an else/finally clause")
        connect, extra = _connect_call(suite_statements(node.body))
        if extra:
            differences.append(
                "besides connecting it runs: " + "; ".join(code_of(statement) for statement in extra)
            )
        if connect is None:
            differences.append("its try block does not start with `psycopg2.connect(...)`")
        else:
            differences.extend(self.connect_differences(connect))
        differences.extend(self._handler_differences(node.handlers))
        return differences

    def _handler_differences(self, handlers: Sequence[cst.ExceptHandler]) -> list[str]:
        if not handlers:
            return ["it lets connection errors propagate (the shim returns None)"]
        differences: list[str] = []
        first = handlers[0]
        catches = first.type is None or self._catches_connect_failure(first.type)
        if not catches:
            differences.append(
                f"`except {code_of(first.type) if first.type else ''}` may not catch a failed connect"
            )
        if not _handler_only_logs_and_returns_none(first):
            differences.append("its except block does more than log and return None: " + code_of(first.body))
        return differences

    def _catches_connect_failure(self, node: cst.BaseExpression) -> bool:
        names = self.names_of(node)
        if isinstance(node, cst.Tuple):
            return any(self._catches_connect_failure(element.value) for element in node.elements)
        return bool(names & _CONNECT_FAILURE_CATCHERS)


class _ContractAnalysis(_HelperAnalysis):
    """The same walk, blind to connection parameters: only the control flow counts."""

    CONTRACT_ONLY = True

    def differences_of(self, function: cst.FunctionDef) -> list[str]:
        # A helper that always raises instead of returning None breaks the contract, and PS101 can use
        # that fact for callers without a None guard (see raising_helper): it is stated, not lost.
        differences = super().differences_of(function)
        if differences:
            return [*differences, *raising_helper_facts(self.module, function, self.names_of)]
        # One that keeps it may still let exceptions out (a missing variable, an invalid DSN): what
        # escapes is stated too (see escapes), as facts, never as differences.
        return escape_facts(function, self.scope, self.project)

    def connect_differences(self, connect: cst.Call) -> list[str]:
        return [d for d in super().connect_differences(connect) if d.endswith("not psycopg2.connect")]


def _connect_call(body: list[cst.BaseStatement]) -> tuple[cst.Call | None, list[cst.CSTNode]]:
    """The connect call of ``return <call>`` / ``name = <call>; return name``, plus any extra statements.

    Extra statements (``conn.autocommit = True``, ``SET search_path``...) are what makes a helper differ
    from the shim, so they are returned for the report rather than swallowed.
    """
    smalls: list[cst.CSTNode] = []
    for statement in body:
        if isinstance(statement, cst.SimpleStatementLine):
            smalls.extend(statement.body)
        else:
            smalls.append(statement)
    if not smalls:
        return None, []
    first, rest = smalls[0], smalls[1:]
    if isinstance(first, cst.Return) and isinstance(first.value, cst.Call):
        return first.value, rest
    if (
        isinstance(first, cst.Assign)
        and len(first.targets) == 1
        and isinstance(first.targets[0].target, cst.Name)
        and isinstance(first.value, cst.Call)
    ):
        name = first.targets[0].target.value
        last = rest[-1] if rest else None
        if isinstance(last, cst.Return) and isinstance(last.value, cst.Name) and last.value.value == name:
            rest = rest[:-1]
        return first.value, rest
    return None, smalls


def _returns_none(statement: cst.BaseStatement) -> bool:
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return False
    small = statement.body[0]
    return isinstance(small, cst.Return) and literal(small.value) is None


def _handler_only_logs_and_returns_none(handler: cst.ExceptHandler) -> bool:
    """Logging, local assignments and ``if`` around them are fine; the block must end in ``return None``."""
    statements = suite_statements(handler.body)
    if not statements or not _returns_none(statements[-1]):
        return False
    return all(_only_logs(statement) for statement in statements[:-1])


def _only_logs(statement: cst.BaseStatement) -> bool:
    if isinstance(statement, cst.If):
        orelse = statement.orelse
        if isinstance(orelse, cst.If) and not _only_logs(orelse):  # an `elif` chain, checked to its end
            return False
        blocks = [statement.body] + ([orelse.body] if isinstance(orelse, cst.Else) else [])
        return all(_only_logs(inner) for block in blocks for inner in suite_statements(block))
    if not isinstance(statement, cst.SimpleStatementLine):
        return False
    for small in statement.body:
        if isinstance(small, cst.Pass):
            continue
        if isinstance(small, cst.Assign) and all(isinstance(t.target, cst.Name) for t in small.targets):
            continue
        if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call) and _is_log_call(small.value):
            continue
        return False
    return True


def _is_log_call(call: cst.Call) -> bool:
    func = call.func
    if isinstance(func, cst.Name):
        return func.value == "print"
    return isinstance(func, cst.Attribute) and func.attr.value in _LOG_METHODS
