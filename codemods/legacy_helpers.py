"""Knowledge about the project's home-grown ``get_postgres_connection`` helpers, shared by PS101/PS102/PS901.

Three jobs, all by resolved names (LibCST's ``QualifiedNameProvider``), never by text matching:

* find the helpers (``discover_legacy_helpers``) and every remaining reference to them
  (``find_legacy_references``), for the runner and the cleanup phase;
* decide whether a helper is *equivalent* to ``db_utils.get_postgres_connection`` (same connection
  parameters, same "``None`` on failure" contract, nothing else done to the connection), because only then
  is routing its callers to the shim behavior-preserving (``helper_differences``);
* resolve a call in the file being transformed to a helper, and compute which imports become unused once
  the rewritten calls no longer use them (the rules share this so PS101 and PS102 agree).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import libcst as cst
from libcst.helpers import get_absolute_module_from_package_for_import
from libcst.metadata import (
    Assignment,
    ImportAssignment,
    MetadataWrapper,
    PositionProvider,
    QualifiedName,
    QualifiedNameProvider,
    Scope,
)

__all__ = [
    "DEFAULT_HELPER_NAME",
    "LEGACY_PREFILTER_NAMES",
    "HelperVerdicts",
    "analyse_legacy_helpers",
    "discover_legacy_helpers",
    "find_legacy_references",
    "helper_differences",
    "resolve_helper",
]

DEFAULT_HELPER_NAME = "get_postgres_connection"

#: Options key under which the runner may pass ``analyse_legacy_helpers``' result (FQN -> differences).
DIFFERENCES_OPTION = "legacy_helper_differences"
#: Options key for the user's opt-out: "I know my helper is equivalent to the shim".
TRUST_OPTION = "trust_legacy_helpers"

# What db_utils.get_postgres_connection reads for each psycopg2.connect parameter, and its default.
_SHIM_PARAMETERS: dict[str, tuple[str, str, object]] = {
    # parameter: (POSTGRES_* variable, libpq variable, shim default)
    "host": ("POSTGRES_HOST", "PGHOST", "localhost"),
    "port": ("POSTGRES_PORT", "PGPORT", "5432"),
    "dbname": ("POSTGRES_DB", "PGDATABASE", "postgres"),
    "user": ("POSTGRES_USER", "PGUSER", "postgres"),
    "password": ("POSTGRES_PASSWORD", "PGPASSWORD", None),
}
_PARAMETER_ALIASES = {"database": "dbname"}
_ENV_GETTERS = frozenset({"os.environ.get", "os.getenv"})
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


# --------------------------------------------------------------------------------------------- names


def absolute_name(name: str, package: str | None) -> str | None:
    """``..db.get_conn`` seen from package ``app.api`` -> ``app.db.get_conn`` (None if unresolvable)."""
    if not name.startswith("."):
        return name
    level = len(name) - len(name.lstrip("."))
    rest = name[level:]
    if package is None:
        return None
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    joined = ".".join([*base, rest]) if rest else ".".join(base)
    return joined or None


def resolve_helper(
    qualified_names: Iterable[QualifiedName],
    helpers: Sequence[str],
    module_name: str | None,
    package_name: str | None,
) -> tuple[str | None, bool]:
    """(helper FQN, ambiguous) for the qualified names of an expression.

    A module-level name of the helper's own module resolves to ``<module>.<name>``; a relative import
    is made absolute with the package. ``ambiguous`` is True when the name may be the helper *or*
    something else (e.g. imported, then reassigned): such a site is reported, never rewritten.
    """
    resolved: set[str] = set()
    for qualified in qualified_names:
        name = qualified.name
        if "<locals>" in name:
            resolved.add(name)
            continue
        if qualified.source.name == "LOCAL" and module_name:
            name = f"{module_name}.{name}"
        absolute = absolute_name(name, package_name)
        resolved.add(absolute if absolute is not None else name)
    matching = resolved.intersection(helpers)
    if not matching:
        return None, False
    return sorted(matching)[0], len(resolved) > 1


def LEGACY_PREFILTER_NAMES(helpers: Sequence[str]) -> tuple[str, ...]:
    """The short names a file must mention to possibly refer to a helper (the runner's text prefilter)."""
    names = {helper.rpartition(".")[2] for helper in helpers} or {DEFAULT_HELPER_NAME}
    return tuple(sorted(names))


def _parse(source: str) -> cst.Module | None:
    try:
        return cst.parse_module(source)
    except Exception:  # a file that does not parse is reported by the transform, not here
        return None


def _module_level_functions(module: cst.Module) -> Iterable[cst.FunctionDef]:
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


def discover_legacy_helpers(
    sources: Mapping[str, str], root_package_names: Mapping[str, str]
) -> tuple[str, ...]:
    """FQNs of every module-level ``def get_postgres_connection`` in ``sources`` (path -> text)."""
    found: set[str] = set()
    for path, text in sources.items():
        module_name = root_package_names.get(path)
        if not module_name or DEFAULT_HELPER_NAME not in text:
            continue
        module = _parse(text)
        if module is None:
            continue
        for function in _module_level_functions(module):
            if function.name.value == DEFAULT_HELPER_NAME:
                found.add(f"{module_name}.{DEFAULT_HELPER_NAME}")
    return tuple(sorted(found))


# ------------------------------------------------------------------------------- remaining references


class _ReferenceCollector(cst.CSTVisitor):
    """Every place in one file that still refers to a helper (see ``find_legacy_references``)."""

    METADATA_DEPENDENCIES = (PositionProvider, QualifiedNameProvider)

    def __init__(self, path: str, module_name: str, package_name: str, helpers: Sequence[str]) -> None:
        super().__init__()
        self.path = path
        self.module_name = module_name
        self.package_name = package_name
        self.helpers = helpers
        self.short_names = {helper.rpartition(".")[2]: helper for helper in helpers}
        self.found: list[tuple[int, int, str]] = []
        self._definition_names: set[int] = set()
        self._all_strings: set[int] = set()
        self._star_helpers: list[str] = []

    def _add(self, node: cst.CSTNode, what: str) -> None:
        position = self.get_metadata(PositionProvider, node).start
        self.found.append((position.line, position.column + 1, what))

    def visit_Module(self, node: cst.Module) -> None:
        for function in _module_level_functions(node):
            if f"{self.module_name}.{function.name.value}" in self.helpers:
                # The definition's own name is not a reference; its body is (recursion counts).
                self._definition_names.add(id(function.name))
                self._all_strings.update(_all_entries(node, function.name.value))

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        module = get_absolute_module_from_package_for_import(self.package_name or None, node)
        if module is None:
            return False
        if isinstance(node.names, cst.ImportStar):
            for helper in self.helpers:
                if helper.rpartition(".")[0] == module:
                    self._star_helpers.append(helper)
            return False
        for alias in node.names:
            if f"{module}.{alias.evaluated_name}" in self.helpers:
                self._add(alias, f"imports {module}.{alias.evaluated_name}")
        return False

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_Name(self, node: cst.Name) -> None:
        if id(node) in self._definition_names:
            return
        self._check_expression(node)
        if self._star_helpers and node.value in self.short_names:
            helper = self.short_names[node.value]
            if helper in self._star_helpers and not self.get_metadata(QualifiedNameProvider, node, set()):
                self._add(node, f"uses {node.value} (star import of {helper.rpartition('.')[0]})")

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self._check_expression(node)

    def _check_expression(self, node: cst.BaseExpression) -> None:
        names = self.get_metadata(QualifiedNameProvider, node, set())
        helper, _ = resolve_helper(names, self.helpers, self.module_name, self.package_name)
        if helper is not None:
            code = cst.Module([]).code_for_node(node)
            self._add(node, f"refers to {helper} ({code})")

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        if id(node) in self._all_strings:
            return
        value = node.evaluated_value
        if isinstance(value, bytes):
            return
        helper = self.short_names.get(value) or (value if value in self.helpers else None)
        if helper is not None:
            self._add(node, f"mentions {helper} in a string ({value!r})")


def _all_entries(module: cst.Module, name: str) -> set[int]:
    """ids of the ``"name"`` strings in the module's ``__all__`` (part of the definition, removed with it)."""
    found: set[int] = set()
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if (
                isinstance(small, (cst.Assign, cst.AugAssign, cst.AnnAssign))
                and _assigns_all(small)
                and isinstance(small.value, (cst.List, cst.Tuple))
            ):
                for element in small.value.elements:
                    value = element.value
                    if isinstance(value, cst.SimpleString) and value.evaluated_value == name:
                        found.add(id(value))
    return found


def _assigns_all(node: cst.Assign | cst.AugAssign | cst.AnnAssign) -> bool:
    targets = [target.target for target in node.targets] if isinstance(node, cst.Assign) else [node.target]
    return any(isinstance(target, cst.Name) and target.value == "__all__" for target in targets)


def find_legacy_references(
    sources: Mapping[str, str], module_names: Mapping[str, str], helpers: Sequence[str]
) -> tuple[str, ...]:
    """``"path:line:col: what"`` for every reference to a helper outside its own definition.

    Stricter than "imports that are still used": *every* import of a helper is listed, because deleting
    the helper would turn even an unused import into an ImportError. A file that does not parse is
    listed too: nothing can be proven about it.
    """
    if not helpers:
        return ()
    prefilter = LEGACY_PREFILTER_NAMES(helpers)
    references: list[str] = []
    for path in sorted(sources):
        text = sources[path]
        if not any(name in text for name in prefilter):
            continue
        module = _parse(text)
        if module is None:
            references.append(f"{path}:1:1: does not parse; cannot prove it does not use the helper")
            continue
        module_name = module_names.get(path, "")
        package_name = _package_of(path, module_name)
        collector = _ReferenceCollector(path, module_name, package_name, helpers)
        MetadataWrapper(module, unsafe_skip_copy=True).visit(collector)
        references.extend(f"{path}:{line}:{column}: {what}" for line, column, what in sorted(collector.found))
    return tuple(references)


def _package_of(path: str, module_name: str) -> str:
    if path.endswith("__init__.py"):
        return module_name
    return module_name.rpartition(".")[0]


# --------------------------------------------------------------------- is the helper equivalent to the shim?


def analyse_legacy_helpers(
    sources: Mapping[str, str], module_names: Mapping[str, str], helpers: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """FQN -> what differs from the shim (empty tuple: equivalent) for every helper found in ``sources``.

    The runner passes this in ``RuleOptions.extra["legacy_helper_differences"]`` so PS101/PS102 can judge
    call sites in files other than the helper's own.
    """
    by_module = {module: path for path, module in module_names.items()}
    verdicts: dict[str, tuple[str, ...]] = {}
    for helper in helpers:
        module_name, _, function_name = helper.rpartition(".")
        path = by_module.get(module_name)
        if path is None or path not in sources:
            continue
        differences = helper_differences(sources[path], function_name)
        if differences is not None:
            verdicts[helper] = differences
    return verdicts


def helper_differences(source: str, function_name: str) -> tuple[str, ...] | None:
    """What the helper ``function_name`` in ``source`` does differently from the shim; None if not defined.

    Equivalent means: no parameters, no decorators; its body (after the docstring) builds the parameters
    (optionally via local names or a parameterless module-level function returning a dict literal) and is
    ``try: return psycopg2.connect(**params) except <connect failure>: <log>; return None`` (or assigns
    the connection and returns it), where every parameter is read from ``POSTGRES_*`` with the shim's
    default. Anything else is a difference, spelled out for the report.
    """
    module = _parse(source)
    if module is None:
        return None
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    qualified = wrapper.resolve(QualifiedNameProvider)
    functions = [f for f in _module_level_functions(module) if f.name.value == function_name]
    if not functions:
        return None
    analysis = _HelperAnalysis(module, qualified)
    if len(functions) > 1:
        return ("it is defined more than once",)
    return tuple(analysis.differences_of(functions[0]))


class _HelperAnalysis:
    def __init__(self, module: cst.Module, qualified: Mapping[cst.CSTNode, object]) -> None:
        self.module = module
        self.qualified = qualified
        self.locals: dict[str, cst.BaseExpression] = {}

    def names_of(self, node: cst.CSTNode) -> set[str]:
        value = self.qualified.get(node, ())
        # MetadataWrapper.resolve hands out lazily computed values for this provider.
        names = value() if callable(value) else value
        return (
            {q.name for q in names if isinstance(q, QualifiedName)} if isinstance(names, Iterable) else set()
        )

    def code(self, node: cst.CSTNode) -> str:
        return " ".join(self.module.code_for_node(node).split())

    def differences_of(self, function: cst.FunctionDef) -> list[str]:
        differences: list[str] = []
        if function.decorators:
            differences.append("it is decorated")
        if function.asynchronous is not None:
            differences.append("it is async")
        if _has_parameters(function.params):
            differences.append("it takes parameters")
        body = _strip_docstring(
            list(function.body.body) if isinstance(function.body, cst.IndentedBlock) else []
        )
        tries = [statement for statement in body if isinstance(statement, cst.Try)]
        if not tries:
            connect, extra = _connect_call(body)
            if connect is not None and not extra:
                differences.extend(self._connect_differences(connect))
                return [*differences, "it lets connection errors propagate (the shim returns None)"]
        if len(tries) != 1:
            return [*differences, "it is not `try: return psycopg2.connect(...)` / `except: return None`"]
        before, after = body[: body.index(tries[0])], body[body.index(tries[0]) + 1 :]
        for statement in before:
            if not self._collect_local(statement):
                differences.append(f"it runs `{self.code(statement)}` before connecting")
        differences.extend(self._try_differences(tries[0]))
        returns_in_try = any(
            isinstance(small, cst.Return)
            for line in _statements_of(tries[0].body)
            if isinstance(line, cst.SimpleStatementLine)
            for small in line.body
        )
        if not returns_in_try and not after:
            differences.append("it never returns the connection")
        elif not self._returns_connection(tries[0], after):
            differences.append("it does more after the try: " + "; ".join(self.code(s) for s in after))
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
        if _literal(small.value) is None:
            return True
        first = _statements_of(attempt.body)[0] if _statements_of(attempt.body) else None
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
        if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
            return False
        small = statement.body[0]
        if (
            isinstance(small, cst.Assign)
            and len(small.targets) == 1
            and isinstance(small.targets[0].target, cst.Name)
        ):
            self.locals[small.targets[0].target.value] = small.value
            return True
        return False

    def _try_differences(self, node: cst.Try) -> list[str]:
        differences: list[str] = []
        if node.orelse is not None or node.finalbody is not None:
            differences.append("its try has an else/finally clause")
        body = [statement for statement in node.body.body if isinstance(statement, cst.BaseStatement)]
        connect, extra = _connect_call(body)
        if extra:
            differences.append(
                "besides connecting it runs: " + "; ".join(self.code(statement) for statement in extra)
            )
        if connect is None:
            differences.append("its try block does not start with `psycopg2.connect(...)`")
        else:
            differences.extend(self._connect_differences(connect))
        differences.extend(self._handler_differences(node.handlers))
        return differences

    def _connect_differences(self, connect: cst.Call) -> list[str]:
        if not self.names_of(connect.func) & {"psycopg2.connect"}:
            return [f"it calls {self.code(connect.func)}, not psycopg2.connect"]
        return self._argument_differences(connect)

    def _handler_differences(self, handlers: Sequence[cst.ExceptHandler]) -> list[str]:
        if not handlers:
            return ["it lets connection errors propagate (the shim returns None)"]
        differences: list[str] = []
        first = handlers[0]
        catches = first.type is None or self._catches_connect_failure(first.type)
        if not catches:
            differences.append(
                f"`except {self.code(first.type) if first.type else ''}` may not catch a failed connect"
            )
        if not _handler_only_logs_and_returns_none(first):
            differences.append(
                "its except block does more than log and return None: " + self.code(first.body)
            )
        return differences

    def _catches_connect_failure(self, node: cst.BaseExpression) -> bool:
        names = self.names_of(node)
        if isinstance(node, cst.Tuple):
            return any(self._catches_connect_failure(element.value) for element in node.elements)
        return bool(names & _CONNECT_FAILURE_CATCHERS)

    def _argument_differences(self, call: cst.Call) -> list[str]:
        parameters: dict[str, cst.BaseExpression] = {}
        differences: list[str] = []
        for argument in call.args:
            if argument.star == "**":
                expanded = self._dict_items(argument.value)
                if expanded is None:
                    differences.append(
                        f"its parameters come from `{self.code(argument.value)}`, which poolshift cannot read"
                    )
                    continue
                parameters.update(expanded)
            elif argument.keyword is not None:
                parameters[argument.keyword.value] = argument.value
            else:
                differences.append(
                    f"it connects with a DSN/positional argument `{self.code(argument.value)}`"
                )
        for keyword, value in parameters.items():
            name = _PARAMETER_ALIASES.get(keyword, keyword)
            if name not in _SHIM_PARAMETERS:
                differences.append(f"it passes {keyword}={self.code(value)} (the shim does not)")
                continue
            problem = self._parameter_problem(name, value)
            if problem:
                differences.append(problem)
        given = {_PARAMETER_ALIASES.get(keyword, keyword) for keyword in parameters}
        for name in _SHIM_PARAMETERS:
            if name not in given:
                variable = _SHIM_PARAMETERS[name][0]
                differences.append(f"it does not pass {name} (the shim reads {variable})")
        return differences

    def _dict_items(self, node: cst.BaseExpression) -> dict[str, cst.BaseExpression] | None:
        if isinstance(node, cst.Name) and node.value in self.locals:
            return self._dict_items(self.locals[node.value])
        if isinstance(node, cst.Dict):
            items: dict[str, cst.BaseExpression] = {}
            for element in node.elements:
                if not isinstance(element, cst.DictElement) or not isinstance(element.key, cst.SimpleString):
                    return None
                key = element.key.evaluated_value
                if not isinstance(key, str):
                    return None
                items[key] = element.value
            return items
        if isinstance(node, cst.Call) and not node.args and isinstance(node.func, cst.Name):
            target = [f for f in _module_level_functions(self.module) if f.name.value == node.func.value]
            if len(target) == 1 and not _has_parameters(target[0].params) and not target[0].decorators:
                body = _strip_docstring(
                    list(target[0].body.body) if isinstance(target[0].body, cst.IndentedBlock) else []
                )
                if len(body) == 1 and isinstance(body[0], cst.SimpleStatementLine):
                    small = body[0].body[0]
                    if isinstance(small, cst.Return) and small.value is not None:
                        return self._dict_items(small.value)
        return None

    def _parameter_problem(self, name: str, value: cst.BaseExpression) -> str | None:
        variable, libpq_variable, default = _SHIM_PARAMETERS[name]
        if isinstance(value, cst.Name) and value.value in self.locals:
            value = self.locals[value.value]
        value = self._unwrap_conversion(name, value)
        lookup = self._env_lookup(value)
        if lookup is None:
            return f"{name} is `{self.code(value)}`; the shim reads {variable} (default {default!r})"
        read_variable, fallback = lookup
        if read_variable != variable:
            return f"{name} is read from {read_variable}; the shim reads {variable}"
        if fallback is not None:
            # The shim's own chain: POSTGRES_X, then libpq's PGX, then its default.
            nested = self._env_lookup(self._unwrap_conversion(name, fallback))
            if nested is not None and nested[0] == libpq_variable:
                fallback = nested[1]
        if not _same_default(name, fallback, default):
            shown = self.code(fallback) if fallback is not None else "none"
            return f"{name} defaults to {shown}; the shim's default is {default!r}"
        return None

    def _unwrap_conversion(self, name: str, value: cst.BaseExpression) -> cst.BaseExpression:
        if (
            isinstance(value, cst.Call)
            and len(value.args) == 1
            and value.args[0].keyword is None
            and not value.args[0].star
            and self.names_of(value.func)
            & ({"builtins.int", "builtins.str"} if name == "port" else {"builtins.str"})
        ):
            return value.args[0].value
        return value

    def _env_lookup(self, value: cst.BaseExpression) -> tuple[str, cst.BaseExpression | None] | None:
        """("POSTGRES_HOST", default expression or None) for ``os.environ.get("POSTGRES_HOST", ...)``."""
        if not isinstance(value, cst.Call) or not self.names_of(value.func) & _ENV_GETTERS:
            return None
        positional = [argument for argument in value.args if argument.keyword is None and not argument.star]
        keywords = {argument.keyword.value: argument.value for argument in value.args if argument.keyword}
        if not positional or not isinstance(positional[0].value, cst.SimpleString):
            return None
        variable = positional[0].value.evaluated_value
        if not isinstance(variable, str):
            return None
        fallback = positional[1].value if len(positional) > 1 else keywords.get("default")
        return variable, fallback


def _same_default(name: str, fallback: cst.BaseExpression | None, default: object) -> bool:
    literal = _literal(fallback)
    if name == "password":
        # libpq treats an empty password as "no password" (it then looks in PGPASSWORD/.pgpass).
        return fallback is None or literal in ("", None)
    if name == "port":
        return literal in ("5432", 5432)
    return literal == default


_MISSING = object()


def _literal(node: cst.BaseExpression | None) -> object:
    if node is None:
        return None
    if isinstance(node, cst.SimpleString):
        return node.evaluated_value
    if isinstance(node, cst.Integer):
        return node.evaluated_value
    if isinstance(node, cst.Name) and node.value == "None":
        return None
    return _MISSING


def _statements_of(block: cst.BaseSuite) -> list[cst.BaseStatement]:
    return list(block.body) if isinstance(block, cst.IndentedBlock) else []


def _has_parameters(params: cst.Parameters) -> bool:
    return bool(
        params.params
        or params.posonly_params
        or params.kwonly_params
        or not isinstance(params.star_arg, cst.MaybeSentinel)
        or params.star_kwarg is not None
    )


def _strip_docstring(body: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
    if body and isinstance(body[0], cst.SimpleStatementLine) and len(body[0].body) == 1:
        small = body[0].body[0]
        if isinstance(small, cst.Expr) and isinstance(
            small.value, (cst.SimpleString, cst.ConcatenatedString)
        ):
            return body[1:]
    return body


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
    return isinstance(small, cst.Return) and _literal(small.value) is None


def _handler_only_logs_and_returns_none(handler: cst.ExceptHandler) -> bool:
    """Logging, local assignments and ``if`` around them are fine; the block must end in ``return None``."""
    statements = list(handler.body.body) if isinstance(handler.body, cst.IndentedBlock) else []
    if not statements or not _returns_none(statements[-1]):
        return False
    return all(_only_logs(statement) for statement in statements[:-1])


def _only_logs(statement: cst.BaseStatement) -> bool:
    if isinstance(statement, cst.If):
        blocks = [statement.body] + ([statement.orelse.body] if statement.orelse is not None else [])
        return all(
            isinstance(block, cst.IndentedBlock) and all(_only_logs(inner) for inner in block.body)
            for block in blocks
        )
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


# ----------------------------------------------------------------------------- verdicts inside a rule


@dataclass(frozen=True)
class Verdict:
    """Whether calls to one helper may be routed to the shim; ``reason``/``message`` say why not."""

    equivalent: bool
    reason: str | None = None
    message: str = ""


class HelperVerdicts:
    """Per-file cache of helper verdicts for a rule (runner's analysis, the file itself, or the disk)."""

    def __init__(
        self,
        module: cst.Module,
        *,
        filename: str | None,
        module_name: str | None,
        extra: Mapping[str, object],
    ) -> None:
        self.module = module
        self.filename = filename
        self.module_name = module_name
        self.trusted = extra.get(TRUST_OPTION) is True
        given = extra.get(DIFFERENCES_OPTION)
        self.given: Mapping[str, Sequence[str]] = given if isinstance(given, Mapping) else {}
        self.cache: dict[str, Verdict] = {}

    def verdict(self, helper: str) -> Verdict:
        if helper not in self.cache:
            self.cache[helper] = self._compute(helper)
        return self.cache[helper]

    def _compute(self, helper: str) -> Verdict:
        differences = self._differences(helper)
        if differences is None:
            if self.trusted:
                return Verdict(True)
            return Verdict(
                False,
                "unknown-helper",
                f"the definition of {helper} was not found, so poolshift cannot show it connects like the "
                "shim (set trust_legacy_helpers = true in [tool.poolshift] if it does)",
            )
        if differences and not self.trusted:
            return Verdict(
                False, "custom-factory", f"{helper} differs from the shim: " + "; ".join(differences)
            )
        return Verdict(True)

    def _differences(self, helper: str) -> Sequence[str] | None:
        if helper in self.given:
            return self.given[helper]
        helper_module, _, function_name = helper.rpartition(".")
        if helper_module == self.module_name:
            return helper_differences(self.module.code, function_name)
        source = self._read_from_disk(helper_module)
        return helper_differences(source, function_name) if source is not None else None

    def _read_from_disk(self, helper_module: str) -> str | None:
        """The helper module's text, found next to this file (root = filename minus module path)."""
        if not self.filename or not self.module_name:
            return None
        path = Path(self.filename)
        depth = len(self.module_name.split("."))
        parts = path.with_suffix("").parts
        if path.name == "__init__.py":
            parts = parts[:-1]
        if len(parts) < depth:
            return None
        root = Path(*path.parts[: len(parts) - depth]) if len(parts) > depth else Path()
        relative = Path(*helper_module.split("."))
        for candidate in (root / relative.with_suffix(".py"), root / relative / "__init__.py"):
            try:
                return candidate.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
        return None


# ---------------------------------------------------------------------------------------- imports


def root_name(node: cst.BaseExpression) -> cst.Name | None:
    while isinstance(node, cst.Attribute):
        node = node.value
    return node if isinstance(node, cst.Name) else None


class _NodeIds(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[int] = set()

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.ids.add(id(node))
        return True


def subtree_ids(nodes: Iterable[cst.CSTNode]) -> set[int]:
    collector = _NodeIds()
    for node in nodes:
        node.visit(collector)
    return collector.ids


def unused_after_rewrite(
    scopes: Iterable[Scope], removed_nodes: Iterable[cst.CSTNode], exported: Iterable[str] = ()
) -> set[int]:
    """ids of import aliases whose every use lies inside ``removed_nodes`` (they become unused).

    Grouped by alias because ``import a.b`` binds both ``a`` and ``a.b`` in LibCST's scopes: the alias
    goes only if none of its bindings is used anywhere else. Names listed in ``__all__`` are re-exports
    and are always kept.
    """
    removed = subtree_ids(removed_nodes)
    keep_names = set(exported)
    by_alias: dict[int, list[Assignment]] = {}
    for scope in scopes:
        for assignment in scope.assignments:
            if isinstance(assignment, ImportAssignment):
                alias = _alias_for(assignment)
                if alias is not None:
                    by_alias.setdefault(id(alias), []).append(assignment)
    unused: set[int] = set()
    for alias_id, bindings in by_alias.items():
        nodes = [id(access.node) for binding in bindings for access in binding.references]
        if any(binding.name in keep_names for binding in bindings):
            continue
        if nodes and all(node in removed for node in nodes):
            unused.add(alias_id)
    return unused


def exported_names(module: cst.Module) -> set[str]:
    """Strings in the module's ``__all__`` (re-exported names must keep their imports)."""
    names: set[str] = set()
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, (cst.Assign, cst.AugAssign, cst.AnnAssign)) and _assigns_all(small):
                value = small.value
                if isinstance(value, (cst.List, cst.Tuple)):
                    for element in value.elements:
                        if isinstance(element.value, cst.SimpleString):
                            text = element.value.evaluated_value
                            if isinstance(text, str):
                                names.add(text)
    return names


def _alias_for(binding: ImportAssignment) -> cst.ImportAlias | None:
    node = binding.node
    if not isinstance(node, (cst.Import, cst.ImportFrom)) or isinstance(node.names, cst.ImportStar):
        return None
    for alias in node.names:
        bound = alias.evaluated_alias or alias.evaluated_name
        if bound == binding.name or (
            isinstance(node, cst.Import) and alias.asname is None and bound.split(".")[0] == binding.name
        ):
            return alias
    return None


@dataclass(frozen=True)
class HelperUse:
    """One expression in the file that resolves to a helper."""

    node: cst.BaseExpression  # the Call for calls, else the Name/Attribute
    helper: str
    is_call: bool
    ambiguous: bool
    in_definition: bool  # inside the helper's own ``def`` (recursion): never rewritten


class _HelperUseCollector(cst.CSTVisitor):
    def __init__(
        self,
        names_of: Callable[[cst.CSTNode], Iterable[QualifiedName]],
        helpers: Sequence[str],
        module_name: str | None,
        package_name: str | None,
    ) -> None:
        super().__init__()
        self.names_of = names_of
        self.helpers = helpers
        self.module_name = module_name
        self.package_name = package_name
        self.uses: list[HelperUse] = []
        self._skip: set[int] = set()
        self._definition_depth = 0

    def _resolve(self, node: cst.BaseExpression) -> tuple[str | None, bool]:
        return resolve_helper(self.names_of(node), self.helpers, self.module_name, self.package_name)

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._skip.add(id(node.name))
        if self.module_name and f"{self.module_name}.{node.name.value}" in self.helpers:
            self._definition_depth += 1

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        if self.module_name and f"{self.module_name}.{original_node.name.value}" in self.helpers:
            self._definition_depth -= 1

    def visit_Call(self, node: cst.Call) -> None:
        helper, ambiguous = self._resolve(node.func)
        if helper is not None:
            self._skip.add(id(node.func))
            self.uses.append(HelperUse(node, helper, True, ambiguous, self._definition_depth > 0))

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if id(node) in self._skip:
            return True
        helper, ambiguous = self._resolve(node)
        if helper is not None:
            self.uses.append(HelperUse(node, helper, False, ambiguous, self._definition_depth > 0))
            return False
        return True

    def visit_Name(self, node: cst.Name) -> None:
        if id(node) in self._skip:
            return
        helper, ambiguous = self._resolve(node)
        if helper is not None:
            self.uses.append(HelperUse(node, helper, False, ambiguous, self._definition_depth > 0))


def collect_helper_uses(
    module: cst.Module,
    names_of: Callable[[cst.CSTNode], Iterable[QualifiedName]],
    helpers: Sequence[str],
    module_name: str | None,
    package_name: str | None,
) -> list[HelperUse]:
    """Every call of and other reference to a helper in ``module`` (import statements excluded)."""
    collector = _HelperUseCollector(names_of, helpers, module_name, package_name)
    module.visit(collector)
    return collector.uses


class ImportPruner:
    """Drops import aliases (by id of the *original* node) during a rule's own transform pass.

    A rule calls ``prune_line`` from ``leave_SimpleStatementLine`` and ``drop_emptied`` from
    ``leave_Module``/``leave_IndentedBlock``. Unlike LibCST's RemoveImportsVisitor it keeps the comment
    lines above a removed import (they move to the next statement), and it knows exactly which aliases
    became unused because the rule decided every rewrite before transforming.
    """

    def __init__(self, alias_ids: set[int]) -> None:
        self.alias_ids = alias_ids
        self.emptied: set[int] = set()
        self.trailing_comments: dict[int, cst.Comment] = {}

    def prune_line(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        if not self.alias_ids:
            return updated_node
        smalls: list[cst.BaseSmallStatement] = []
        for original, updated in zip(original_node.body, updated_node.body, strict=True):
            if isinstance(original, (cst.Import, cst.ImportFrom)) and isinstance(
                updated, (cst.Import, cst.ImportFrom)
            ):
                pruned = self._prune(original, updated)
                if pruned is not None:
                    smalls.append(pruned)
            else:
                smalls.append(updated)
        if len(smalls) == len(updated_node.body) and all(
            a is b for a, b in zip(smalls, updated_node.body, strict=True)
        ):
            return updated_node
        if not smalls:
            result = updated_node.with_changes(body=[cst.Pass()])
            self.emptied.add(id(result))
            trailing = updated_node.trailing_whitespace.comment
            if trailing is not None:
                self.trailing_comments[id(result)] = trailing
            return result
        smalls[-1] = smalls[-1].with_changes(semicolon=cst.MaybeSentinel.DEFAULT)
        return updated_node.with_changes(body=smalls)

    def _prune(
        self, original: cst.Import | cst.ImportFrom, updated: cst.Import | cst.ImportFrom
    ) -> cst.Import | cst.ImportFrom | None:
        if isinstance(original.names, cst.ImportStar) or isinstance(updated.names, cst.ImportStar):
            return updated
        keep = [u for o, u in zip(original.names, updated.names, strict=True) if id(o) not in self.alias_ids]
        if len(keep) == len(updated.names):
            return updated
        if not keep:
            return None
        keep[-1] = keep[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        if isinstance(updated, cst.ImportFrom):
            return updated.with_changes(names=keep)
        return updated.with_changes(names=keep)

    def drop_emptied(
        self, body: Sequence[cst.BaseStatement], footer: Sequence[cst.EmptyLine]
    ) -> tuple[list[cst.BaseStatement], list[cst.EmptyLine]]:
        """Remove emptied import lines; their comment lines move to the next statement (comments survive)."""
        result: list[cst.BaseStatement] = []
        carried: list[cst.EmptyLine] = []
        for statement in body:
            if id(statement) in self.emptied and isinstance(statement, cst.SimpleStatementLine):
                # Blank lines and comments above the import stay where they were; a comment after it
                # gets its own line.
                if any(line.comment is not None for line in statement.leading_lines):
                    carried.extend(statement.leading_lines)
                trailing = self.trailing_comments.get(id(statement))
                if trailing is not None:
                    carried.append(cst.EmptyLine(comment=trailing))
                continue
            if carried and isinstance(statement, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
                result.append(statement.with_changes(leading_lines=[*carried, *statement.leading_lines]))
                carried = []
            else:
                result.append(statement)
        return result, [*carried, *footer]
